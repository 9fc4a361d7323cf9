# Logtune: `make run` starts the app on embedded defaults, `make test` runs lint and the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run web worker migrate test lint format bench bench-more clean chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: otherwise transformers/peft/accelerate pull the newest build with CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The bench extra (sentence-transformers, what bench/embed.py compares with), torch left as it is: the check fails
# if pip replaced the wheel pinned above.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(BENCH_STAMP)

migrate: install
	DEBUG=1 $(BIN)/python manage.py migrate --no-input

# Web, a worker for the default queue, a GPU-queue worker running one fine-tune at a time, a worker for shadowed
# calls, the serving supervisor (model servers for deployed fine-tunes), and beat (which runs the reaper of
# fine-tunes whose worker died every minute).
# var/local.env: a random SECRET_KEY for this checkout, so the README's manage.py commands need no DEBUG=1 (written
# once; config/local_env.py). HOST and PORT: where the web server listens (make run PORT=8001 HOST=0.0.0.0).
run: migrate
	$(BIN)/python -m config.local_env
	DEBUG=1 $(BIN)/python manage.py bootstrap_demo --address $(HOST):$(PORT)
	DEBUG=1 $(BIN)/python manage.py create_demo_model
	@echo "Starting web on http://$(HOST):$(PORT)/, three Celery workers, the model servers' supervisor and beat (Ctrl-C stops them all)"
	DEBUG=1 bash -c 'trap "kill 0" INT TERM EXIT; \
		$(BIN)/celery -A config worker -Q default -n default@%h --concurrency 2 --loglevel INFO & \
		$(BIN)/celery -A config worker -Q gpu -n gpu@%h --concurrency 1 --prefetch-multiplier 1 --loglevel INFO & \
		$(BIN)/celery -A config worker -Q shadow -n shadow@%h --pool threads --concurrency 8 --loglevel INFO & \
		$(BIN)/python manage.py serve_models & \
		$(BIN)/celery -A config beat --schedule $(CURDIR)/var/celerybeat-schedule --loglevel INFO & \
		$(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)'

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Browser tests drive Debian's Chromium (never a downloaded browser build).
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# Tests run against real PostgreSQL and Redis (TEST_DATABASE_URL / TEST_BROKER_URL override the defaults
# in config/test_settings.py). Extra pytest arguments: make test ARGS="-k ingest".
test: lint chromium
	$(BIN)/pytest $(ARGS)
	@echo "Again on SQLite, the embedded default (tests that need PostgreSQL are skipped there, having run above):"
	TEST_DATABASE_URL=sqlite:///$(CURDIR)/var/test-embedded.sqlite3 LOGTUNE_STRICT_SKIPS=0 $(BIN)/pytest tests/curation -q $(ARGS)

bench: install $(BENCH_STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/import_file.py

# The shorter benchmarks of the rest (a few minutes each); explore.py, train.py and dedup.py run on their own.
bench-more: install $(BENCH_STAMP)
	$(BIN)/python bench/load.py
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/pii.py
	$(BIN)/python bench/similar.py
	$(BIN)/python bench/embed.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
