"""The package's old flat module names, kept for one release (until 0.2).

mripkg used to be one flat folder (``mripkg.robustness``, ``mripkg.claims``, ...).  Its modules
now live in stage subpackages (see :mod:`mripkg`).  So that old code, notebooks and commands keep
working, each old name is an alias:

- a module that moved whole (``mripkg.train`` -> :mod:`mripkg.training.train`) is the same
  module object under its old name (``import mripkg.train`` and monkeypatching it reach the new
  module);
- a module that was split (``mripkg.robustness``, ``mripkg.claims``, ...) is a
  composite that hands on each old name from its new home (the table below is the map);
- ``python -m mripkg.reproduce`` (and ``readme``, ``bench``, ``train``, ``paper_gpu``) runs
  the new module's ``main()``.

Nothing inside mripkg imports these aliases (a test checks); new code imports the new homes.
``mripkg.attacks`` needs no alias: it is the attacks package, which hands on the same names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

#: old module (under mripkg) -> its new home, or {new home: names it hands on}; a name
#: ``OLD:NEW`` was renamed on the move
ALIASES: dict[str, str | dict[str, tuple[str, ...]]] = {
    "analysis": {
        "evaluation.clean": (
            "METRIC_CONVENTIONS",
            "zero_filled_example",
            "zero_filled_metrics",
            "zero_filled_split",
        ),
        "io": (
            "all_finite",
            "read_json",
            "write_json",
        ),
        "report.moved": (
            "flatten_numbers",
            "moved_numbers",
        ),
        "report.tables": ("dataset_table", "format_table"),
    },
    "artifacts": "evaluation.artifacts",
    "checkpoints": {
        "io": (
            "atomic_write_bytes",
            "atomic_write_json",
            "sha256_file",
        ),
        "training.checkpoints": (
            "CheckpointError",
            "load_training_state",
            "load_weights",
            "read_sidecar",
            "save_training_state",
            "save_weights",
            "sidecar_path",
        ),
    },
    "claims": {
        "evaluation.artifacts": ("grey_matter_mask",),
        "models": ("LABELS", "MODELS:NAMES"),
        "evaluation.selection": ("eps_key",),
        "evaluation.stats": (
            "CONFIDENCE",
            "MIN_EXCESS_DB",
            "MIN_SLICES",
            "N_RESAMPLES",
            "WINDOW",
            "_as_np",
            "auc_rows",
            "bootstrap_interval",
            "clear_word",
            "excess_over_control",
            "mean_interval",
            "region_energy",
            "slice_spearman",
            "worst_window_ssim_drop",
        ),
        "evaluation.summaries": (
            "_finite_or_none",
            "_mean_sd",
            "seed_summary",
            "transfer_summary",
            "whitebox_summary",
        ),
        "io": ("write_json",),
        "report.claims": (
            "AUTHORS_IRIM",
            "CLAIM4_CRITERIA",
            "GREY_MATTER_EPS",
            "NOT_EVIDENCE",
            "NOT_REPRODUCED",
            "PARTLY",
            "REPRODUCED",
            "TRANSFER_EPS",
            "_claim",
            "_fmt",
            "_interval_dict",
            "_lab",
            "_none",
            "_oriented",
            "_row",
            "_worst",
            "artifacts_report",
            "authors_number",
            "claim4_criteria",
            "claim4_verdict",
            "claim_grey_matter",
            "claim_monotone",
            "claim_noise_like",
            "claim_rows_markdown",
            "claim_small_eps",
            "claim_transfer",
            "claim_verdict",
            "clean_summary",
            "clear_rule",
            "excess_text",
            "falls_with_eps",
            "grey_matter_verdict",
            "noise_like_inputs",
            "rows_verdict",
            "scorecard",
            "scorecard_markdown",
            "transfer_report",
            "whitebox_report",
            "write_scorecard",
        ),
        "report.tables": ("format_table",),
    },
    "reconstruction": {
        "models": ("LABELS", "MODELS:NAMES"),
        "evaluation.clean": (
            "build_reconstructors",
            "build_tv",
            "evaluate_split",
            "measure",
            "per_slice_metrics",
            "per_slice_rows",
            "reconstruct",
            "seed_spread",
            "summarize",
            "tv_lambda_path",
        ),
        "evaluation.selection": ("spread_ids",),
        "experiments.out_of_domain": (
            "OUTLIER_FACTOR",
            "SCALE_FACTOR",
            "out_of_domain_splits",
            "out_of_domain_table",
        ),
        "io": (
            "atomic_write_bytes",
            "read_json",
            "write_csv",
            "write_json",
        ),
        "report.tables": (
            "format_out_of_domain",
            "format_table:clean_table",
            "out_of_domain_summary",
        ),
        "training.train": ("load_or_train",),
    },
    "robustness": {
        "attacks.cache": (
            "AttackCache",
            "cached_attack",
            "item_seed",
        ),
        "attacks.control": (
            "_control_generator",
            "budget_controls",
            "budget_gap",
            "control_deltas",
            "random_control",
        ),
        "attacks.kspace": (
            "AttackResult",
            "AttackSettings",
            "EpsLike",
            "as_eps",
            "frozen",
            "image_norm",
            "image_route_measurement",
            "kspace_attack",
        ),
        "evaluation.attack_runs": (
            "attack_settings",
            "cached_grid",
            "diffusion_objective",
            "diffusion_objective_label",
            "diffusion_settings",
            "missing_pairs",
            "model_id",
            "run_diffusion_whitebox",
            "run_whitebox",
            "time_attack_step",
        ),
        "evaluation.scoring": (
            "Evaluation",
            "ROUTES",
            "_metrics_grid",
            "_ratio",
            "attack_inputs",
            "evaluate",
            "evaluate_attack",
            "pending_keys",
            "per_slice_rows",
            "transfer_matrix",
        ),
        "evaluation.selection": (
            "SliceSet",
            "eps_key",
            "merge_eps",
            "slice_set",
            "spread_ids",
            "subset_result",
            "transfer_eps",
        ),
        "evaluation.targets": (
            "RECON_FORMAT",
            "ReconCache",
            "Target",
            "_check_recon_tensor",
            "_y_digest",
        ),
        "experiments.whitebox": (
            "ConvergenceCheck",
            "StepSizeCheck",
            "convergence",
            "convergence_check",
            "short_vs_full_sampler",
            "step_size_check",
            "step_size_scores",
        ),
        "io": (
            "atomic_write_json",
            "sha256_file",
        ),
    },
    "train": "training.train",
    "explorer": "app.explorer",
    "figures": "report.figures",
    "readme": "report.readme",
    "open_questions": "experiments.open_questions",
    "reproduce": "app.reproduce",
    "bench": "app.bench",
    "paper_gpu": "app.paper_gpu",
}

#: old modules that are commands (``python -m mripkg.<old>``)
COMMANDS = ("reproduce", "readme", "bench", "train", "paper_gpu")


def _composite(name: str, table: dict[str, tuple[str, ...]]) -> types.ModuleType:
    mod = types.ModuleType(name, f"Alias of the old flat module {name} (see mripkg._aliases).")
    for home, names in table.items():
        src = importlib.import_module(f"{__package__}.{home}")
        for n in names:
            old, _, new = n.partition(":")  # "OLD:NEW": a name that changed on the move
            setattr(mod, old, getattr(src, new or old))
    mod.__all__ = sorted(
        n.partition(":")[0] for names in table.values() for n in names if not n.startswith("_")
    )
    return mod


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str) -> None:
        self.old = old

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = ALIASES[self.old]
        if isinstance(target, str):
            module = importlib.import_module(f"{__package__}.{target}")
            self.spec = module.__spec__  # the import system overwrites it; exec_module restores
            return module
        return _composite(spec.name, target)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is the new one (its own spec put back), or a composite."""
        if getattr(self, "spec", None) is not None:
            module.__spec__ = self.spec

    def get_code(self, fullname: str) -> types.CodeType | None:
        """What ``python -m mripkg.<old>`` runs: the new module's ``main()``."""
        if self.old not in COMMANDS:
            return None
        new = f"{__package__}.{ALIASES[self.old]}"
        return compile(f"import sys\nfrom {new} import main\nsys.exit(main())\n", fullname, "exec")

    def is_package(self, fullname: str) -> bool:
        return False


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        prefix, _, old = fullname.rpartition(".")
        if prefix != __package__ or old not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(old))


def install() -> None:
    """Put the alias finder first on ``sys.meta_path`` (once): before any other finder, so that
    an old name never reaches a stale file of that name (an editable install of an older
    checkout, say)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
