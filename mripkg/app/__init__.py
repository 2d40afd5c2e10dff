"""Stage 8, app: the commands and apps a person runs.

Receives command-line arguments or notebook parameters; hands on runs of the other stages.

- :mod:`.reproduce`: runs notebooks 01-07 headless (``python -m mripkg.reproduce``);
- :mod:`.explorer`: the interactive explorer of notebook 06;
- :mod:`.bench`: timing benchmarks (``python -m mripkg.bench``);
- :mod:`.paper_gpu`: the paper-scale run on a GPU (``python -m mripkg.paper_gpu``);
- :mod:`.sweep`: notebook 03's white-box sweep in shards (``--shard i/n``, torchrun) and its merge;
- :mod:`.tolerances`: the run-to-run spread of the attack stage on validation slices, the
  tolerances of ``make verify`` (``make tolerances``);
- :mod:`.site`: the static site from executed notebooks (``python -m mripkg.app.site``);
- :mod:`.lab`: the notebooks into a folder, JupyterLab there (``python -m mripkg.app.lab``).

Top floor: nothing imports it.
"""
