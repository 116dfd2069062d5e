#!/usr/bin/env bash
# plot.sh RESULTS.csv OUTDIR
#
# Draws PNG charts from the CSV that `compare --out=RESULTS.csv` writes:
#   OUTDIR/lifecycle.png     lifecycles/s vs client threads, one line per system
#   OUTDIR/scaling.png       lifecycles/s at N clients / the same system's
#                            figure at 1 client
#   OUTDIR/dedup.png         submits/s (50% duplicate keys) vs client threads
#   OUTDIR/latency-N.png     latency percentiles (p50 .. max) per system and
#                            call with N clients, next to raw fdatasync
#   OUTDIR/scale.png         lifecycles/s vs live tasks already held
# Charts whose workload is not in the CSV are skipped. Needs gnuplot
# (Debian: gnuplot-nox, installed by tools/setup.sh).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 RESULTS.csv OUTDIR" >&2
  exit 2
fi
CSV="$1"
OUT="$2"
if ! command -v gnuplot >/dev/null; then
  echo "plot.sh: gnuplot is missing (apt-get install gnuplot-nox, or tools/setup.sh)" >&2
  exit 1
fi
mkdir -p "${OUT}"
WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

# Prints the fields of matching CSV rows, tab-separated. Handles quoted
# fields (params and labels contain commas). Columns: 1 workload, 2 system,
# 3 label, 4 threads, 5 metric, 6 value, 7 unit, 8 ratio, 9 params.
#   rows WORKLOAD METRIC_REGEX FIELD...
rows() {
  local workload="$1" metric="$2"
  shift 2
  awk -v want_w="${workload}" -v want_m="${metric}" -v fields="$*" '
    function split_csv(line,    i, c, f, inq, n) {
      n = 0; f = ""; inq = 0
      for (i = 1; i <= length(line); i++) {
        c = substr(line, i, 1)
        if (inq) {
          if (c == "\"") {
            if (substr(line, i + 1, 1) == "\"") { f = f c; i++ } else inq = 0
          } else f = f c
        } else if (c == "\"") inq = 1
        else if (c == ",") { F[++n] = f; f = "" }
        else f = f c
      }
      F[++n] = f
      return n
    }
    NR > 1 {
      split_csv($0)
      if (F[1] != want_w || F[5] !~ ("^" want_m "$")) next
      n = split(fields, idx, " ")
      out = ""
      for (k = 1; k <= n; k++) out = out (k > 1 ? "\t" : "") F[idx[k]]
      print out
    }' "${CSV}"
}

# A fixed look per system (taskwal solid and thick, the others dashed) and
# per call (point type), so colours mean the same in every chart.
style_for() {  # style_for "SYSTEM [CALL]"
  local system="${1%% *}" call="" color dash width
  [[ "$1" == *" "* ]] && call="${1#* }"
  case "${system}" in
    taskwal-always) color='#d62728' dash=1 width=3 ;;
    taskwal-interval) color='#ff7f0e' dash=1 width=3 ;;
    taskwal-none) color='#e377c2' dash=1 width=3 ;;
    sqlite-full) color='#1f77b4' dash=2 width=2 ;;
    sqlite-normal) color='#17becf' dash=2 width=2 ;;
    rocksdb-sync) color='#2ca02c' dash=4 width=2 ;;
    rocksdb-nosync) color='#bcbd22' dash=4 width=2 ;;
    rocksdb-buffered) color='#8c564b' dash=4 width=2 ;;
    disk-fdatasync) color='#000000' dash=3 width=2 ;;
    disk-fdatasync-prezeroed) color='#333333' dash=5 width=2 ;;
    disk-group-commit) color='#555555' dash=3 width=2 ;;
    disk-append) color='#999999' dash=3 width=2 ;;
    *) color='#7f7f7f' dash=5 width=1 ;;
  esac
  local point=7
  case "${call}" in
    complete) point=5 ;;
    append+fdatasync) point=9 ;;
  esac
  echo "linespoints lc rgb '${color}' dt ${dash} lw ${width} pt ${point} ps 1.2"
}

# One data file per series; echoes the gnuplot plot clauses. Reads
# "series<TAB>x<TAB>y" lines from WORK/PREFIX.tsv.
series_clauses() {
  local prefix="$1"
  local clauses=() name
  while IFS= read -r name; do
    local file="${WORK}/${prefix}-$(echo "${name}" | tr -c 'A-Za-z0-9_.-' '_').dat"
    awk -F'\t' -v s="${name}" '$1 == s { print $2 "\t" $3 }' "${WORK}/${prefix}.tsv" |
      sort -g -k1,1 >"${file}"
    clauses+=("'${file}' using 1:2 with $(style_for "${name}") title '${name}'")
  done < <(cut -f1 "${WORK}/${prefix}.tsv" | awk '!seen[$0]++')
  local IFS=","
  echo "${clauses[*]}"
}

COMMON="set terminal pngcairo size 1100,650 font 'sans,10' noenhanced
set grid xtics ytics mytics
set key outside right top
set logscale y 10
set format y '%.0s%c'"

# --- Throughput vs client threads --------------------------------------------
rate_chart() {  # rate_chart WORKLOAD METRIC FILE TITLE YLABEL
  rows "$1" "$2" 2 4 6 >"${WORK}/$1.tsv"
  [[ -s "${WORK}/$1.tsv" ]] || return 0
  local plot max
  plot="$(series_clauses "$1")"
  max="$(cut -f2 "${WORK}/$1.tsv" | sort -n | tail -n1)"
  gnuplot <<GP
${COMMON}
set output '${OUT}/$3'
set title '$4'
set xlabel 'client threads'
set ylabel '$5 (log scale)'
set logscale x 2
set xrange [0.8:${max} * 1.25]
set xtics (1, 2, 4, 8, 16, 32, 64, 128, 256)
plot ${plot}
GP
  echo "wrote ${OUT}/$3"
}
rate_chart lifecycle lifecycles_per_s lifecycle.png \
  "Lifecycles/s (submit + claim + complete) vs client threads" "lifecycles/s"
rate_chart dedup submits_per_s dedup.png \
  "Submit calls/s with 50% duplicate keys vs client threads" "submits/s"

# --- Scaling: each system's rate as a multiple of its own 1-client rate -------
rows lifecycle lifecycles_per_s 2 4 6 |
  awk -F'\t' '{ v[$1, $2] = $3; if ($2 == 1) one[$1] = $3; key[NR] = $1 "\t" $2 }
    END { for (i = 1; i <= NR; i++) { split(key[i], k, "\t");
            if (one[k[1]] > 0) print k[1] "\t" k[2] "\t" v[k[1], k[2]] / one[k[1]] } }' \
  >"${WORK}/scaling.tsv"
if [[ -s "${WORK}/scaling.tsv" ]]; then
  plot="$(series_clauses scaling)"
  max="$(cut -f2 "${WORK}/scaling.tsv" | sort -n | tail -n1)"
  gnuplot <<GP
${COMMON}
set output '${OUT}/scaling.png'
set title 'Scaling: lifecycles/s at N clients as a multiple of 1 client'
set xlabel 'client threads'
set ylabel 'x the 1-client figure (log scale)'
set format y '%gx'
set logscale x 2
set xrange [0.8:${max} * 1.25]
set xtics (1, 2, 4, 8, 16, 32, 64, 128, 256)
plot ${plot}, 1 with lines lc rgb '#bbbbbb' dt 2 title '1x'
GP
  echo "wrote ${OUT}/scaling.png"
fi

# --- Latency percentiles -----------------------------------------------------
# x = -log10(1 - q): p50 -> 0.30, p90 -> 1, p99 -> 2, p99.9 -> 3, max -> 4.
rows latency '.*_(p50|p90|p99|p999|max)_us' 2 4 5 6 >"${WORK}/latency-all.tsv"
for clients in $(cut -f2 "${WORK}/latency-all.tsv" | sort -n -u); do
  awk -F'\t' -v c="${clients}" '
    $2 == c {
      split($3, parts, "_")   # submit_p99_us -> submit, p99, us
      q = parts[2]
      x = (q == "p50") ? 0.30103 : (q == "p90") ? 1 : (q == "p99") ? 2 : (q == "p999") ? 3 : 4
      call = parts[1]
      if ($1 == "disk-fdatasync") call = "append+fdatasync"
      if (call == "claim") next
      print $1 " " call "\t" x "\t" $4
    }' "${WORK}/latency-all.tsv" >"${WORK}/latency.tsv"
  [[ -s "${WORK}/latency.tsv" ]] || continue
  plot="$(series_clauses latency)"
  gnuplot <<GP
${COMMON}
set output '${OUT}/latency-${clients}.png'
set title 'Latency per call, ${clients} client(s), systems that fdatasync per call'
set xlabel 'percentile'
set ylabel 'microseconds (log scale)'
set xtics ('p50' 0.30103, 'p90' 1, 'p99' 2, 'p99.9' 3, 'max' 4)
set xrange [0:4.2]
plot ${plot}
GP
  echo "wrote ${OUT}/latency-${clients}.png"
done

# --- Scale ---------------------------------------------------------------------
rows scale lifecycles_per_s 2 3 6 | sed 's/\tlive=/\t/' >"${WORK}/scale.tsv"
if [[ -s "${WORK}/scale.tsv" ]]; then
  plot="$(series_clauses scale)"
  gnuplot <<GP
${COMMON}
set output '${OUT}/scale.png'
set title 'Lifecycles/s with a backlog of live tasks'
set xlabel 'live tasks already held (log scale)'
set ylabel 'lifecycles/s (log scale)'
set logscale x 10
set format x '%.0s%c'
set offsets graph 0.05, graph 0.05
plot ${plot}
GP
  echo "wrote ${OUT}/scale.png"
fi
