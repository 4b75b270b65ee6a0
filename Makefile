# `make demo` and `make test` each set everything up on a fresh machine (see scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.occsim-installed

.PHONY: setup demo test lint

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# The main job: drive the bundled learned world headless with the planner, write a video.
demo: $(STAMP)
	SDL_VIDEODRIVER=dummy $(PY) -m occsim drive --headless --steps 10 --out outputs/drive

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
