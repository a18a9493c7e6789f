"""data_recipes: crossling's multilingual training data — recipes (translation
following, xCoT, cross-lingual instructions, safety, preference prompts), quality gates, mixing and
the ``crossling data build`` command. Not here: training or evaluation themselves."""
