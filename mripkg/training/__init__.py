"""Stage 3, training: the supervised and DDPM training loops, checkpoints and shipped weights.

Receives a profile and the data splits (:mod:`mripkg.data`); hands on trained models and
their checkpoint sidecars (:func:`~mripkg.training.train.load_or_train`).

- :mod:`.train`: build, train, load and ship models (``python -m mripkg.train``);
- :mod:`.checkpoints`: safetensors weights with JSON sidecars, resumable training state;
- :mod:`.distributed`: data-parallel training on N ranks (torchrun, DistributedDataParallel).

Imports only the root modules and models/.
"""
