# Two commands do everything on a machine with Python 3 and make:
#   make figures [PROFILE=smoke|quick|paper]   set up .venv, run every notebook headless
#   make test                                  set up .venv, lint, unit tests, nbval (smoke)

PROFILE ?= quick
PY ?= python3
VENV = .venv
BIN = $(VENV)/bin
PYTHON = $(BIN)/python
STAMP = $(VENV)/.installed
TORCH_VERSION = 2.13.0
# Optional wheel index for torch, e.g. the CPU-only build (a much smaller download):
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
# Optional: run some notebooks only (ONLY=01,03), on your own NIfTI folder (DATA_DIR=..., a
# relative path is taken from the directory make runs in and passed through as given), or
# with notebook parameters (PARAMS="diffusion_whitebox=True", space-separated NAME=VALUE)
ONLY ?=
DATA_DIR ?=
PARAMS ?=
# make weights NPROC=8: train on 8 processes (GPUs when present) with torchrun + DDP;
# TRAIN_ARGS: more options of python -m mripkg.training.train, e.g. "--tf32 --precision bf16"
NPROC ?= 1
TRAIN_ARGS ?=
# make lab: the port and further arguments of `jupyter lab` (ARGS="--no-browser --ip=0.0.0.0")
PORT ?= 8888
ARGS ?=

# Hash randomisation off, so that nothing depends on the interpreter's hash seed.
export PYTHONHASHSEED = 0

.DEFAULT_GOAL := help
.PHONY: help venv lock figures readme site test weights lab bench verify tolerances hooks clean

help:
	@echo "make figures [PROFILE=$(PROFILE)]  run notebooks/NN_*.ipynb with papermill -> figures, build/"
	@echo "make test                    ruff, unit tests, nbval on every notebook (smoke profile)"
	@echo "make lab [PORT=8888 ARGS=...]  JupyterLab on notebooks/ (prints its address)"
	@echo "make site [PROFILE=$(PROFILE)]    static site from build/<profile>/ -> build/site/<profile>/"
	@echo "make weights [PROFILE=...] [NPROC=8]  retrain the weights (weights/<profile>/); NPROC: torchrun ranks"
	@echo "make bench [PROFILE=...]     timing benchmark -> runs/<profile>/bench.json"
	@echo "make verify [PROFILE=...]    compare runs/<profile> with the committed results/<profile>"
	@echo "make tolerances [PROFILE=..] measure the run-to-run spread -> results/<profile>/tolerances.json"
	@echo "make venv                    only create .venv and install the pinned dependencies"
	@echo "make lock                    rewrite requirements-lock.txt from .venv (after editing pyproject)"
	@echo "make readme                  regenerate the tables of README.md and docs/*.md from results/quick/"
	@echo "make hooks                   strip notebook outputs on git add (nbstripout filter, this clone)"
	@echo "make clean                   remove build/, runs/smoke/ and caches (keeps .venv)"

# (Re)install when pyproject.toml or the lock file changes; the stamp makes re-runs instant.
# Exact versions: torch first (TORCH_INDEX), then requirements-lock.txt, then mripkg itself.
$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PYTHON) -m pip install -r requirements-lock.txt
	$(PYTHON) -m pip install --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

figures: venv
	$(PYTHON) -m mripkg.app.reproduce --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) \
		$(if $(DATA_DIR),--data-dir "$(DATA_DIR)") $(foreach p,$(PARAMS),--param $(p))
	@echo "Compare this run with the committed results (tolerances in docs/reproducibility.md):"
	@echo "  make verify PROFILE=$(PROFILE)"

lock:
	$(PYTHON) -m pip install -e ".[test,docs]"
	$(PYTHON) tools/lock.py

readme: venv
	$(PYTHON) -m mripkg.report.readme
	$(PYTHON) -m mripkg.report.readme --readme docs/reproducibility.md

# Needs nothing running: the executed notebooks of build/$(PROFILE)/ and results/$(PROFILE)/.
site: venv
	$(PYTHON) -m mripkg.app.site --profile $(PROFILE)

test: venv
	rm -rf runs/smoke
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MPLBACKEND=Agg $(PYTHON) -m pytest tests
	MRIPKG_PROFILE=smoke $(PYTHON) -m pytest --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=900 notebooks/

weights: venv
ifeq ($(NPROC),1)
	$(PYTHON) -m mripkg.training.train --profile $(PROFILE) --all --ship $(TRAIN_ARGS)
else
	$(BIN)/torchrun --standalone --nproc_per_node=$(NPROC) -m mripkg.training.train \
		--profile $(PROFILE) --all --ship $(TRAIN_ARGS)
endif

lab: venv hooks
	@echo "JupyterLab on notebooks/, port $(PORT): open the http://localhost:...?token=... address it prints below (Ctrl-C stops it)"
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) $(ARGS)

bench: venv
	$(PYTHON) -m mripkg.app.bench --profile $(PROFILE)

# Every number of runs/<profile> against git HEAD's results/<profile>, within measured tolerances
verify: venv
	$(PYTHON) -m mripkg.report.run_spread --profile $(PROFILE)
	$(PYTHON) -m mripkg.report.verify --profile $(PROFILE)

# The run-to-run spread behind those tolerances (attack stage on validation slices, ~30 CPU-min)
tolerances: venv
	nice -n 10 $(PYTHON) -m mripkg.app.tolerances --profile $(PROFILE)

# The nbstripout filter of .gitattributes, defined in this clone's .git/config: outputs,
# execution counts and the Python version Lab writes (metadata.language_info) are stripped, so
# a notebook saved in Lab filters back to the committed one (git diff shows nothing)
hooks: venv
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		$(BIN)/nbstripout --install && \
		git config filter.nbstripout.extrakeys "metadata.language_info" && \
		echo "git now strips the outputs of notebooks/*.ipynb (.gitattributes)"; \
	else echo "not a git checkout: no filter installed"; fi

clean:
	rm -rf build runs/smoke .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
