"""crossling evaluation: language fidelity, NTREX chrF/BLEU, MGSM, MultiJail safety, reward transfer.

``crossling.generation.generate`` is the batch-generation entry point other areas use (contract 6);
``crossling eval run CONFIG`` (``evaluation.cli``) runs a comparison of models and writes results/.
"""
