#!/usr/bin/env bash
# Writes the man pages (docs/man/) and shell completions (docs/completions/) of syncer and
# harness anew from their clap definitions. The test that runs here in check mode is CI's
# guard that the committed files match the code (harness/src/cli.rs, generated_docs).
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_DOCS=1 cargo test -q -p harness --lib generated_docs
cargo test -q -p harness --lib generated_docs
ls docs/man docs/completions
