"""Training: a reference instruction-tuning run with the inversion mitigations, and
evaluation inside a training loop. Everything here sits on top of the evaluation core.

- :mod:`harness.training.config`: :class:`FinetuneConfig`, the recipe of ``harness finetune``;
- :mod:`harness.training.data`: instruction data, rendered and tokenised for training;
- :mod:`harness.training.mitigations`: non-context-critical filtering, counterfactual
  augmentation, query/key-only training;
- :mod:`harness.training.run`: :func:`run_finetune` and :func:`read_mitigations`;
- :mod:`harness.training.callbacks`: :class:`ContextRelianceCallback` and
  :func:`evaluate_model` for evaluating during training.

Import the submodules: they load torch and transformers.
"""
