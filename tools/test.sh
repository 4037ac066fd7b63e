#!/usr/bin/env bash
# test.sh -- install dependencies, build cmpgw twice (plain in build/,
# ASan+UBSan in build-asan/), run every test in both, and print the totals.
# Last line: "N passed, N failed[, N skipped]".  Exit status non-zero when
# a test failed, when a build failed, or when no test ran at all.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh

# setup DIR [meson options]: configure once, reconfigure afterwards
setup() {
        local dir=$1
        shift
        if [[ -f $dir/build.ninja ]]; then
                meson setup --reconfigure "$dir" "$@"
        else
                meson setup "$dir" "$@"
        fi
}

setup build
setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
# libFuzzer harnesses: clang, everything instrumented, only the harnesses built
CC=clang setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link -Dfuzz_seconds="${FUZZ_SECONDS:-20}"
status=0
build_failures=0
rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json
if ninja -C build; then
        meson test -C build --print-errorlogs || status=1
else
        echo "test.sh: build failed in build/" >&2
        status=1 build_failures=$((build_failures + 1))
fi
if ninja -C build-asan; then
        ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                meson test -C build-asan --print-errorlogs || status=1
else
        echo "test.sh: build failed in build-asan/" >&2
        status=1 build_failures=$((build_failures + 1))
fi

fuzzers=(tests/fuzz/fuzz_cmp_msg tests/fuzz/fuzz_cmp_path tests/fuzz/fuzz_config)
if ninja -C build-fuzz "${fuzzers[@]}"; then
        meson test -C build-fuzz --suite fuzz --no-rebuild --print-errorlogs || status=1
else
        echo "test.sh: build failed in build-fuzz/" >&2
        status=1 build_failures=$((build_failures + 1))
fi

# a failed build counts as one failed test, so that the totals show it
python3 - "$build_failures" build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
        build-fuzz/meson-logs/testlog.json <<'PY' || status=1
import json, os, sys
passed = skipped = 0
failed = int(sys.argv[1])
failures = []
TAIL = 40
for path in sys.argv[2:]:
    if not os.path.exists(path):
        print("test.sh: no %s (no tests ran there)" % path, file=sys.stderr)
        continue
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            r = t.get("result", "")
            if r in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r == "SKIP":
                skipped += 1
            else:               # FAIL TIMEOUT ERROR UNEXPECTEDPASS
                failed += 1
                failures.append((os.path.dirname(os.path.dirname(path)), r, t))
# the end of each failed test's output, again, next to the totals: a CI
# record that keeps only the last part of the output still shows why
for build, r, t in failures:
    out = (t.get("stdout") or "") + (t.get("stderr") or "")
    tail = out.splitlines()[-TAIL:]
    print("test.sh: %s: %s %s; the last %d lines of its output:" % (build, r, t.get("name"), len(tail)))
    for l in tail:
        print("  | " + l)
for build, r, t in failures:
    print("test.sh: %s: %s %s" % (build, r, t.get("name")))
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed or passed + failed == 0 else 0)
PY
exit "$status"
