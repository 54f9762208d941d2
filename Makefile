# Set-up is `make demo` or `make test`: each creates or refreshes .venv from uv.lock, then runs.
# uv comes from PyPI into a small tool venv (.uvtool) so nothing is installed outside the checkout;
# its package cache (~/.cache/uv) makes every later fresh install a matter of seconds (hard links).
PY      ?= python3
UV_VER  := 0.13.9
UV      := .uvtool/bin/uv
VENV    := .venv
RUN_DIR ?= runs/demo

.PHONY: setup demo test bench clean

$(UV):
	$(PY) -m venv .uvtool
	.uvtool/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VER)"

setup: $(UV)
	@bash .ci/system-deps
	$(UV) sync --frozen --all-groups --extra lerobot --compile-bytecode
	@$(VENV)/bin/python -c "import rtctl, torch, ray, mujoco; print('rtctl env ok: torch', torch.__version__, '| ray', ray.__version__, '| mujoco', mujoco.__version__)"

demo: setup
	rm -rf $(RUN_DIR)
	MUJOCO_GL=egl $(VENV)/bin/rtctl run configs/arm_demo.yaml --out $(RUN_DIR)
	@echo "report: $(RUN_DIR)/summary.json, $(RUN_DIR)/plots/*.png, $(RUN_DIR)/log.jsonl"

test: setup
	MUJOCO_GL=egl $(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) .uvtool runs
