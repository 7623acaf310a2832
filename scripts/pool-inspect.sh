#!/usr/bin/env bash
# Read-only views of curriculum pools in Redis, computed server-side by scripts/lua/*.lua
# (Redis >= 7: the scripts carry the no-writes flag, so the server refuses any write from them).
#
#   scripts/pool-inspect.sh [-u URL | -h HOST -p PORT] VIEW
#   VIEW: sessions | summary SESSION | top SESSION [N] | labels SESSION
#
# The URL's password goes to redis-cli through REDISCLI_AUTH (never on a command line) and is
# shown as *** in anything this script prints. `python -m curriculum.cli inspect` (the
# `curriculum inspect` command) shows the same views computed in Python.
set -euo pipefail

LUA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lua"
REGISTRY="curriculum:sessions"
PROG="$(basename "$0")"

usage() {
  cat >&2 <<EOF
usage: $PROG [-u URL | -h HOST -p PORT] VIEW

VIEW:
  sessions            registered pools: size, active tasks, completions, evictions
  summary SESSION     counters and hyper-parameters of one pool
  top SESSION [N]     the N tasks with the highest score: learning progress, or a PLR pool's
                      task score (default 10, 0 = all)
  labels SESSION      composition of one pool by task label

options:
  -u URL    redis://[user[:password]@]host[:port][/db], rediss://... or unix:///path[?db=N]
  -h HOST   Redis host (default 127.0.0.1)
  -p PORT   Redis port (default 6379)
  --help    this text
EOF
  exit 2
}

die() {
  echo "$PROG: $*" >&2
  exit 2
}

# The URL with its passwords (between the user's ':' and the last '@', and a query's
# password=...) replaced by ***.
mask_url() {
  local url="$1" rest userinfo
  rest="${url#*://}"
  if [[ "$url" == *://* && "$rest" == *@* ]]; then
    userinfo="${rest%@*}"
    if [[ "$userinfo" == *:* ]]; then
      url="${url%%://*}://${userinfo%%:*}:***@${rest##*@}"
    fi
  fi
  while [[ "$url" =~ ^(.*[?\&][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=)([^\&#*][^\&#]*)(.*)$ ]]; do
    url="${BASH_REMATCH[1]}***${BASH_REMATCH[3]}"
  done
  printf '%s' "$url"
}

# The value of a URL query's password=..., decoded (redis-py reads it too).
query_password() {
  local url="$1"
  if [[ "$url" =~ [?\&][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=([^\&#]*) ]]; then
    urldecode "${BASH_REMATCH[1]}"
  fi
}

urldecode() {
  local text="${1//+/ }"
  printf '%b' "${text//%/\\x}"
}

CLI=(redis-cli)
TARGET=""
PASSWORD=""
URL=""
HOST=""
PORT=""

# Turn a URL into redis-cli options (password kept aside for REDISCLI_AUTH).
parse_url() {
  local url="$1" rest userinfo hostport db=""
  case "$url" in
    unix://*)
      rest="${url#unix://}"
      if [[ "$rest" == *@* ]]; then
        userinfo="${rest%@*}"
        rest="${rest##*@}"
        [[ "$userinfo" == *:* ]] && PASSWORD="$(urldecode "${userinfo#*:}")"
        [[ -n "${userinfo%%:*}" ]] && CLI+=(--user "$(urldecode "${userinfo%%:*}")")
      fi
      if [[ "$rest" =~ [?\&]db=([0-9]+) ]]; then db="${BASH_REMATCH[1]}"; fi
      CLI+=(-s "${rest%%\?*}")
      ;;
    redis://* | rediss://*)
      [[ "$url" == rediss://* ]] && CLI+=(--tls)
      rest="${url#*://}"
      rest="${rest%%\?*}"
      if [[ "$rest" == *@* ]]; then
        userinfo="${rest%@*}"
        rest="${rest##*@}"
        if [[ "$userinfo" == *:* ]]; then
          PASSWORD="$(urldecode "${userinfo#*:}")"
          userinfo="${userinfo%%:*}"
        fi
        [[ -n "$userinfo" ]] && CLI+=(--user "$(urldecode "$userinfo")")
      fi
      hostport="${rest%%/*}"
      [[ "$rest" == */* ]] && db="${rest#*/}"
      if [[ "$hostport" =~ ^\[(.*)\](:([0-9]+))?$ ]]; then
        CLI+=(-h "${BASH_REMATCH[1]}")
        [[ -n "${BASH_REMATCH[3]}" ]] && CLI+=(-p "${BASH_REMATCH[3]}")
      elif [[ "$hostport" =~ ^([^:]*)(:([0-9]+))?$ ]]; then
        [[ -n "${BASH_REMATCH[1]}" ]] && CLI+=(-h "${BASH_REMATCH[1]}")
        [[ -n "${BASH_REMATCH[3]}" ]] && CLI+=(-p "${BASH_REMATCH[3]}")
      else
        die "cannot parse the host and port of $(mask_url "$url")"
      fi
      ;;
    *) die "$(mask_url "$url") is not a redis://, rediss:// or unix:// URL" ;;
  esac
  [[ -n "$PASSWORD" ]] || PASSWORD="$(query_password "$url")"
  if [[ -n "$db" ]]; then
    [[ "$db" =~ ^[0-9]+$ ]] || die "bad database number in $(mask_url "$url")"
    CLI+=(-n "$db")
  fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -u) [[ $# -ge 2 ]] || usage; URL="$2"; shift 2 ;;
    -h) [[ $# -ge 2 ]] || usage; HOST="$2"; shift 2 ;;
    -p) [[ $# -ge 2 ]] || usage; PORT="$2"; shift 2 ;;
    --help) usage ;;
    --) shift; break ;;
    -*) echo "$PROG: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done

if [[ -n "$URL" ]]; then
  [[ -z "$HOST" && -z "$PORT" ]] || die "give either -u URL or -h HOST -p PORT, not both"
  parse_url "$URL"
  TARGET="$(mask_url "$URL")"
else
  [[ -z "$PORT" || "$PORT" =~ ^[0-9]+$ ]] || die "bad port: $PORT"
  CLI+=(-h "${HOST:-127.0.0.1}" -p "${PORT:-6379}")
  TARGET="${HOST:-127.0.0.1}:${PORT:-6379}"
fi

[[ $# -ge 1 ]] || usage
VIEW="$1"
shift
SESSION=""
TOP="10"
case "$VIEW" in
  sessions) [[ $# -eq 0 ]] || usage ;;
  summary | labels) [[ $# -eq 1 ]] || usage; SESSION="$1" ;;
  top)
    [[ $# -ge 1 && $# -le 2 ]] || usage
    SESSION="$1"
    TOP="${2:-10}"
    [[ "$TOP" =~ ^[0-9]+$ ]] || die "N must be a non-negative integer, not '$TOP'"
    ;;
  *) usage ;;
esac
if [[ -n "$SESSION" && ! "$SESSION" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ ]]; then
  die "invalid session id '$SESSION'"
fi
command -v redis-cli >/dev/null || die "redis-cli is not on PATH"

# redis-cli with the password in its environment only; -e: fail on an error reply.
rcli() {
  if [[ -n "$PASSWORD" ]]; then
    REDISCLI_AUTH="$PASSWORD" "${CLI[@]}" --no-auth-warning -e "$@"
  else
    "${CLI[@]}" -e "$@"
  fi
}

# Report a failed redis-cli call (its output without the password) and exit 2.
fail() {
  local output="$1"
  [[ -n "$PASSWORD" ]] && output="${output//"$PASSWORD"/***}"
  output="${output#NOPOOL }"
  die "${output:-redis-cli failed} (Redis at $TARGET)"
}

# Run a view script; print its tab-separated rows as aligned columns.
run_view() {
  local script="$1" output status=0
  shift
  output="$(rcli --eval "$LUA_DIR/$script" "$@" 2>&1)" || status=$?
  if [[ $status -ne 0 || "$output" != *$'\t'* ]]; then
    fail "$output"
  fi
  # Columns whose cells are all numbers (or '-') are right-aligned, others left-aligned.
  printf '%s\n' "$output" | awk -F'\t' '
    { for (i = 1; i <= NF; i++) {
        cell[NR, i] = $i
        if (length($i) > w[i]) w[i] = length($i)
        if (NR > 1 && $i !~ /^-?[0-9][0-9.e+-]*$|^-$/) text[i] = 1
      }
      if (NF > nf) nf = NF; rows = NR }
    END {
      for (r = 1; r <= rows; r++) {
        line = ""
        for (i = 1; i <= nf; i++) {
          c = cell[r, i]
          pad = sprintf("%" (text[i] ? "-" : "") w[i] "s", c)
          line = line (i > 1 ? "  " : "") pad
        }
        sub(/ +$/, "", line)
        print line
      }
    }'
}

keys_of() {
  local prefix="curriculum:{$1}"
  printf '%s\n' "$prefix:meta" "$prefix:rows" "$prefix:free" "$prefix:labels"
}

case "$VIEW" in
  sessions)
    echo "# curriculum sessions at $TARGET"
    members="$(rcli --raw SMEMBERS "$REGISTRY" 2>&1)" || fail "$members"
    if [[ -z "$members" ]]; then
      echo "no registered sessions"
      exit 0
    fi
    metas=()
    while IFS= read -r session; do
      [[ -n "$session" ]] && metas+=("curriculum:{$session}:meta")
    done <<<"$members"
    run_view sessions.lua "$REGISTRY" "${metas[@]}" , tsv
    ;;
  summary | labels)
    echo "# $VIEW of session '$SESSION' at $TARGET"
    mapfile -t keys < <(keys_of "$SESSION")
    run_view "$VIEW.lua" "${keys[@]}" , tsv
    ;;
  top)
    shown="$TOP"
    [[ "$TOP" =~ ^0+$ ]] && shown="all"
    mapfile -t keys < <(keys_of "$SESSION")
    table="$(run_view top.lua "${keys[@]}" , "$TOP" tsv)"
    by="LP"
    [[ "${table%%$'\n'*}" == *plr_score ]] && by="PLR score"  # the header names the score
    echo "# top $shown by $by of session '$SESSION' at $TARGET"
    printf '%s\n' "$table"
    ;;
esac
