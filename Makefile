# streamrec: two commands on a fresh machine.
#   make demo   the whole system end to end (online models, deep model trained, swapped in),
#               in one process, no infrastructure; installs torch (the train extra)
#   make test   install, type-check, start Kafka unless KAFKA_BOOTSTRAP_SERVERS is given, run pytest
#               (every test, doctests and the full-size property suites included), stop Kafka
# The developer loop, no broker needed:
#   make test-unit   the tests that need no broker (tests/unit, doctests included), on every core
#   make typecheck   mypy on the packages listed in pyproject.toml ([tool.mypy] files)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -q
# pytest-xdist workers for test-unit: one per core ("auto"); 2 on the project's machines.
UNIT_WORKERS ?= auto
# pytest-xdist workers for make test. Two, whole files each (--dist loadfile: a module's
# fixtures, such as the fault tests' private broker, stay in one worker). Most broker tests
# wait (outages, timeouts, polls), so two of them share 2 cores well: serially the broker
# tests took 1,043 s here, in two workers 794 s under a load of 9 from other work.
TEST_WORKERS ?= 2

.PHONY: demo test test-unit typecheck install install-dev bench kafka-start kafka-stop clean

# Installs are pinned to the tested versions (constraints.txt); pyproject.toml keeps ranges.
CONSTRAINTS := -c constraints.txt

# Serving install (the serve extra): kafka-python, msgspec, river, numpy, onnxruntime; no torch.
# An app needs only `pip install 'streamrec[client]'` (kafka-python and msgspec).
$(VENV)/.installed-serve: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e ".[serve]"
	touch $@

# The demo's install: serving plus the train extra (torch, onnx, onnxscript). The demo is the
# whole system, and its trainer retrains the deep model with torch; `streamrec demo --no-deep`
# runs the online path on the serving install alone.
$(VENV)/.installed-train: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e ".[train]"
	touch $(VENV)/.installed-serve $@

# Everything: training (torch, onnx) and test tools.
$(VENV)/.installed-dev: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e ".[train,dev]"
	touch $(VENV)/.installed-serve $(VENV)/.installed-train $@

install: $(VENV)/.installed-serve
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-train
	$(BIN)/streamrec demo

# A type error fails `make test` (and so CI) before any broker starts. The cache lives in
# .mypy_cache (mypy's own, ignored by git): about a minute cold, about a second warm.
typecheck: $(VENV)/.installed-dev
	$(BIN)/python -m mypy

test: typecheck
	scripts/with-kafka.sh $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# "not kafka" deselects every test that asks for a broker fixture, so nothing starts Kafka and
# KAFKA_BOOTSTRAP_SERVERS is not needed. The property suites run at their full size here too
# (STREAMREC_PROPERTY_EXAMPLES, default 10,000): the control-plane suite asserts its
# strategies reach every outcome, which a smaller size does not reliably do.
test-unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(UNIT_WORKERS) -m "not kafka" $(PYTEST_ARGS) tests/unit

bench: $(VENV)/.installed-dev
	@for b in benchmarks/*.py; do echo "== $$b"; scripts/with-kafka.sh $(BIN)/python $$b || exit 1; done

kafka-start: $(VENV)/.installed-serve
	$(BIN)/streamrec kafka start

kafka-stop:
	$(BIN)/streamrec kafka stop

clean:
	rm -rf $(VENV) .kafka replay-report benchmarks/results .pytest_cache .mypy_cache
