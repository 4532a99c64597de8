#!/usr/bin/env bash
# Compiles android_demo/core and its unit tests with the Kotlin command-line compiler and runs
# them with JUnit 4; no Gradle or Android SDK needed. Installs what is missing (as root on Debian):
# a Java runtime and npm (apt), JUnit 4 (apt package junit4), the Kotlin compiler (npm package
# kotlin-compiler, cached in core/.tools). Set LSNET_GOLDEN_DIR to also check a Python golden
# directory (GOLDEN.md). Last line of output: "N passed, N failed"; exit status non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kotlin_version=2.4.20
tools="$here/.tools"
kotlin_home="$tools/node_modules/kotlin-compiler"
build="$here/build/test-sh"
junit_jars=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar

fail() {
    echo "$1" >&2
    echo "0 passed, 1 failed"
    exit 1
}

apt_install() {
    [[ $(id -u) == 0 ]] || fail "missing $*; install it (apt-get install $*) or run as root"
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
            || fail "could not install $*"
    fi
}

command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v npm >/dev/null || apt_install npm
[[ -f /usr/share/java/junit4.jar ]] || apt_install junit4
if [[ "$(cat "$kotlin_home/build.txt" 2>/dev/null)" != "$kotlin_version" ]]; then
    npm install --silent --no-audit --no-fund --prefix "$tools" "kotlin-compiler@$kotlin_version" \
        || fail "could not install kotlin-compiler@$kotlin_version from npm"
fi

kotlinc() { bash "$kotlin_home/bin/kotlinc" -Werror "$@"; }
lib="$kotlin_home/lib"
rm -rf "$build"
mkdir -p "$build"
cd "$here"
mapfile -t main_sources < <(find src/main/kotlin -name '*.kt' | sort)
mapfile -t test_sources < <(find src/test/kotlin -name '*.kt' | sort)

echo "compiling ${#main_sources[@]} main and ${#test_sources[@]} test files with Kotlin $kotlin_version"
kotlinc -d "$build/main" "${main_sources[@]}" || fail "main sources do not compile"
test_cp="$build/main:$lib/kotlin-test.jar:$lib/kotlin-test-junit.jar:$junit_jars"
kotlinc -cp "$test_cp" -d "$build/test" "${test_sources[@]}" \
    || fail "test sources do not compile"

mapfile -t classes < <(cd "$build/test" && find . -name '*Test.class' ! -name '*$*' \
    | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
java -cp "$test_cp:$build/test:$here/src/test/resources:$lib/kotlin-stdlib.jar" \
    dev.lsnet.core.TestMainKt "${classes[@]}"
