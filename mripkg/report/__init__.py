"""Stage 7, report: from numbers to claims, tables, figures and the README.

Receives the result dicts of evaluation/ and experiments/ (and the JSON files they were saved
to); hands on verdicts (``claims.json``), Markdown / text tables, figures (PNG + PDF) and the
README's result sections.

- :mod:`.claims`: each paper claim's rule, its verdict and the scorecard;
- :mod:`.tables`: plain-text and Markdown tables;
- :mod:`.figures`: the figures of every notebook (one save helper);
- :mod:`.moved`: which numbers moved between two result files;
- :mod:`.readme`: the README's result tables (``python -m mripkg.readme``);
- :mod:`.verify`: a run against the committed results, within measured tolerances
  (``make verify``);
- :mod:`.run_spread`: each claim statistic's slice interval beside the machine-to-machine
  spread.

Imports only the stages below it.
"""
