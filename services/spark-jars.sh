#!/usr/bin/env bash
# Fetch the jars Spark needs to read predlog's Iceberg table into $PREDLOG_CACHE/jars, once:
#   the Iceberg Spark runtime (matching the installed PySpark 4.1, Scala 2.13),
#   the SQLite and PostgreSQL JDBC drivers (the two back-ends of pyiceberg's SQL catalog, which
#   Spark's JdbcCatalog opens as the same catalog).
# Each jar is checked against the .sha1 Maven Central publishes next to it; a cached jar whose
# checksum still matches is kept. Prints the comma-separated paths (the value of PREDLOG_SPARK_JARS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

central="${MAVEN_CENTRAL:-https://repo1.maven.org/maven2}"
jars_dir="$PREDLOG_CACHE/jars"
mkdir -p "$jars_dir"

artifacts=(
    "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:${ICEBERG_VERSION:-1.12.0}"
    "org.xerial:sqlite-jdbc:${SQLITE_JDBC_VERSION:-3.54.1.0}"
    "org.postgresql:postgresql:${POSTGRES_JDBC_VERSION:-42.7.14}"
)

sha1_of() { sha1sum "$1" | cut -d' ' -f1; }

fetch() {  # group:artifact:version -> prints the jar's path
    local group artifact version
    IFS=: read -r group artifact version <<<"$1"
    local name="$artifact-$version.jar"
    local url="$central/${group//.//}/$artifact/$version/$name"
    local jar="$jars_dir/$name"
    if [[ -f "$jar" && -f "$jar.sha1" && "$(sha1_of "$jar")" == "$(cut -c1-40 "$jar.sha1")" ]]; then
        echo "$jar"
        return
    fi
    printf '[services] %s\n' "downloading $name from Maven Central" >&2
    curl -fsSL --retry 3 -o "$jar.sha1.tmp" "$url.sha1"
    curl -fsSL --retry 3 -o "$jar.tmp" "$url"
    local want got
    want="$(cut -c1-40 "$jar.sha1.tmp")"
    got="$(sha1_of "$jar.tmp")"
    if [[ "$want" != "$got" ]]; then
        rm -f "$jar.tmp" "$jar.sha1.tmp"
        printf '[services] %s\n' "$name: SHA-1 $got does not match Maven Central's $want" >&2
        return 1
    fi
    mv "$jar.sha1.tmp" "$jar.sha1"
    mv "$jar.tmp" "$jar"
    echo "$jar"
}

paths=()
for coordinates in "${artifacts[@]}"; do
    paths+=("$(fetch "$coordinates")")
done
(IFS=,; echo "${paths[*]}")
