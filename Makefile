# The two commands of the README. Both create .venv (and install system packages when run as root).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test setup clean

demo: $(STAMP)
	$(PY) -m bench.demo

test: $(STAMP)
	$(PY) -m pytest -q

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install_system_packages.sh
	scripts/install_system_packages.sh
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf .venv dist runs
