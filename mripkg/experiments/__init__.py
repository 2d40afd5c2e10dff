"""Stage 6, experiments: what a notebook runs, one call per analysis cell.

Receives a profile, the data set, the mask and the notebook's parameters; hands on result
dicts and evaluations that the notebooks save and report/ turns into tables, figures and
verdicts.  Each notebook's study is one class whose methods are its analysis cells, in order:

- :mod:`.zero_filled`: notebook 01's zero-filled baseline, result file and checks;
- :mod:`.clean_recon`: notebook 02's clean reconstructions, result files and checks;
- :mod:`.whitebox`: :class:`~.whitebox.WhiteBox` (notebook 03) and its sampler, convergence
  and step-size checks;
- :mod:`.transfer`: :class:`~.transfer.Transfer` (notebook 04);
- :mod:`.artifacts`: :class:`~.artifacts.Artifacts` (notebook 05);
- :mod:`.out_of_domain`: notebook 02's out-of-domain slices;
- :mod:`.open_questions`: :class:`~.open_questions.OpenQuestions` (notebook 07).

Imports only the stages below it (root .. evaluation).
"""
