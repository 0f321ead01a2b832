#!/usr/bin/env bash
# Writes the .deb's generated assets into target/assets/ (beside Cargo.toml, where the
# `[package.metadata.deb]` assets name them): the man pages hookrunner.1 and hookrunner.5 and the
# bash, zsh and fish completions, each printed by the built binary, so they match its flags.
#
#   bash packaging/debian/gen-assets.sh [BINARY]    # default: target/release/hookrunner
#
# packaging/check.sh runs it after the release build and before `cargo deb`; run it the same way
# before a `cargo deb` of your own (which fails while these files are missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=${1:-target/release/hookrunner}
[ -x "$binary" ] || { echo "gen-assets: no binary at \`$binary\`; build it first (cargo build --release --locked)" >&2; exit 1; }

out=target/assets
mkdir -p "$out"
"$binary" man > "$out/hookrunner.1"
"$binary" man 5 > "$out/hookrunner.5"
"$binary" completions bash > "$out/hookrunner.bash"
"$binary" completions zsh > "$out/_hookrunner"
"$binary" completions fish > "$out/hookrunner.fish"
for file in hookrunner.1 hookrunner.5 hookrunner.bash _hookrunner hookrunner.fish; do
    [ -s "$out/$file" ] || { echo "gen-assets: \`$out/$file\` came out empty" >&2; exit 1; }
done
echo "gen-assets: wrote $out/{hookrunner.1,hookrunner.5,hookrunner.bash,_hookrunner,hookrunner.fish}"
