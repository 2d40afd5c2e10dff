"""Stage 5, evaluation: from models and perturbations to numbers.

Receives trained models (training/), perturbations (attacks/) and the test split; hands on
per-slice metrics, summaries and statistics (dicts and tensors) to experiments/ and report/.

In flow order:

- :mod:`.selection`: which slices (:class:`~.selection.SliceSet`) and which eps;
- :mod:`.clean`: the reconstructors and their clean metrics (zero-filled included);
- :mod:`.attack_runs`: attacks over a slice set and eps grid, through the attack cache;
- :mod:`.targets`: reconstruction targets with a per-measurement cache;
- :mod:`.scoring`: clean / perturbed / control reconstructions and their metrics
  (:class:`~.scoring.Evaluation`);
- :mod:`.summaries`: per-eps summaries of evaluations;
- :mod:`.stats`: paired statistics over slices (intervals, excess over the control);
- :mod:`.artifacts`: statistics of the artifacts (change images) an attack leaves.

Imports only the root modules, models/, training/ and attacks/.
"""
