"""Stage 6, experiments: what a notebook runs, one call per analysis.

Receives a profile, the models and the evaluation tools; hands on result dicts that the
notebooks save and report/ turns into tables, figures and verdicts.

- :mod:`.whitebox`: notebook 03's checks (short vs full sampler, convergence, step sizes);
- :mod:`.out_of_domain`: notebook 07's out-of-domain slices;
- :mod:`.open_questions`: notebook 07's questions beyond the paper.

Imports only the stages below it (root .. evaluation).
"""
