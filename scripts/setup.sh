#!/usr/bin/env bash
# Installs everything the worker needs to build, run and be tested, from the package
# registries only. Idempotent: each step checks first and is a no-op when already done.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

say() { printf 'setup: %s\n' "$*" >&2; }
need() {
  command -v "$1" >/dev/null 2>&1 || { say "$1 is required ($2)"; exit 1; }
}
need cargo "install Rust with rustup: https://rustup.rs"
need rustup "install Rust with rustup: https://rustup.rs"
need npm "install Node.js 20.3 or newer"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(worker-build --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION, the version in Cargo.lock (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked
fi

# wrangler (with workerd and esbuild) and binaryen's wasm-opt, exactly as package-lock.json says.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing wrangler and binaryen from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ ! -f .dev.vars ]; then
  say "creating .dev.vars from .dev.vars.example (insecure development defaults)"
  cp .dev.vars.example .dev.vars
else
  # A .dev.vars from an older checkout gets the variables added since, never overwritten.
  while IFS= read -r line; do
    case "$line" in
      [A-Z]*=*)
        name=${line%%=*}
        if ! grep -q "^$name=" .dev.vars; then
          say "adding $name to .dev.vars (insecure development default)"
          printf '%s\n' "$line" >> .dev.vars
        fi
        ;;
    esac
  done < .dev.vars.example
fi

# schemathesis, pinned, in a project-local virtualenv: the e2e suite runs it against the
# worker with openapi.yaml (tests/e2e/schemathesis.rs).
SCHEMATHESIS_VERSION=4.32.5
if [ "$(.venv/bin/schemathesis --version 2>/dev/null | awk '{print $NF}' || true)" != "$SCHEMATHESIS_VERSION" ]; then
  need python3 "install Python 3.9 or newer, with venv"
  say "installing schemathesis $SCHEMATHESIS_VERSION into .venv (once)"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# openapi-python-client, pinned: the e2e suite generates a client from the served document and
# drives the seed flow with it (tests/e2e/schemathesis.rs).
OPENAPI_CLIENT_VERSION=0.29.1
if [ "$(.venv/bin/openapi-python-client --version 2>/dev/null | awk '{print $NF}' || true)" != "$OPENAPI_CLIENT_VERSION" ]; then
  say "installing openapi-python-client $OPENAPI_CLIENT_VERSION into .venv (once)"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "openapi-python-client==$OPENAPI_CLIENT_VERSION"
fi

# comfy-sdk, Comfy-Org's Python client, pinned: the e2e suite runs it unchanged through the
# proxy's host mount against the provider stub (tests/e2e/proxy.rs).
COMFY_SDK_VERSION=0.5.0
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("comfy-sdk"))' 2>/dev/null || true)" != "$COMFY_SDK_VERSION" ]; then
  say "installing comfy-sdk $COMFY_SDK_VERSION into .venv (once)"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "comfy-sdk==$COMFY_SDK_VERSION"
fi

# Chromium from the distribution's packages, for the settings page's browser test
# (tests/browser/settings.mjs, driven by playwright-core from package.json; Playwright's own
# browser download is not used). Debian and Ubuntu: apt-get, as root or through sudo.
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Debian's chromium package for the browser test (once)"
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    say "chromium is missing and this user cannot install packages: apt-get install chromium"
    exit 1
  fi
  need apt-get "install Chromium with your system's package manager"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
