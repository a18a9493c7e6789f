"""The OpenAI-compatible API: ``protocol`` (schemas), ``serving*`` (logic, engine-agnostic), ``router``."""
