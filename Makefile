# Transformer Distiller: common tasks. Run from the repository root.
PYTHON ?= .venv/bin/python
PIP ?= .venv/bin/pip
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint hpo clean

install: .venv/.installed  ## create .venv and install the project (CPU torch pinned first: no CUDA downloads)

.venv/.installed: setup.py
	test -x $(PYTHON) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: install  ## fine-tune the teacher on the demo set, distil it (mix-step, two-step), train the student alone, compare
	$(PYTHON) finetune.py --trainer.callbacks.init_args.overwrite true
	$(PYTHON) distillation_ms.py --trainer.callbacks.init_args.overwrite true
	$(PYTHON) distillation_ts_1st.py --trainer.callbacks.init_args.overwrite true
	$(PYTHON) distillation_ts_2nd.py --trainer.callbacks.init_args.overwrite true
	$(PYTHON) distillation_ms.py --model.adaptors '[]' --model.alpha 1 --trainer.default_root_dir runs/student_alone \
		--trainer.logger.init_args.save_dir runs/student_alone --trainer.logger.init_args.name student-alone-demo \
		--trainer.callbacks.init_args.dirpath outputs/student_alone --trainer.callbacks.init_args.overwrite true
	$(PYTHON) benchmark.py outputs/teacher outputs/student_alone outputs/student_ms outputs/student_ts \
		--names teacher student-alone mix-step two-step --dataset demo --label-names negative positive

test: install  ## the test suite (tiny random models for logic; packaged MiniLM and ../shared/data end to end)
	$(PYTHON) -m pytest -q

hpo: install  ## Optuna search of alpha, temperature, lr and adaptor weights on an SST-2 subset (needs outputs/teacher_sst2)
	$(PYTHON) hpo.py --config configs/hpo_distillation_ms.yaml

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

clean:
	rm -rf runs outputs .pytest_cache
