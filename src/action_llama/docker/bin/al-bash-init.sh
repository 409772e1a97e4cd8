# al-bash-init.sh: sourced (". al-bash-init.sh") before every bash tool call of a model
# session, so variables set with setenv in one call are there in the next.
#
# Defines `setenv NAME value [NAME value ...]`: exports each pair in this shell and appends
# it to $AL_ENV_FILE as `export NAME='value'`, then loads that file. The entry sets AL_ENV_FILE
# (<work dir>/.al-env.sh); unset, it is .al-env.sh beside the signal directory, which is the
# same file (/tmp/.al-env.sh in a container).
# shellcheck shell=sh

if [ -z "${AL_ENV_FILE-}" ]; then
  AL_ENV_FILE=${AL_SIGNAL_DIR:-/tmp/signals}
  AL_ENV_FILE=${AL_ENV_FILE%/*}/.al-env.sh
fi
export AL_ENV_FILE

# _al_quote VALUE: set _al_q to VALUE in single quotes (each ' written as '\'').
_al_quote() {
  _al_rest=$1 _al_q=
  while :; do
    case $_al_rest in
      *"'"*) _al_q=$_al_q${_al_rest%%"'"*}"'\\''"; _al_rest=${_al_rest#*"'"} ;;
      *) break ;;
    esac
  done
  _al_q="'$_al_q$_al_rest'"
}

setenv() {
  # Check every name before setting any. Stray "setenv" words between pairs are skipped.
  _al_want=name
  for _al_arg in "$@"; do
    if [ $_al_want = value ]; then
      _al_want=name
    elif [ "$_al_arg" != setenv ]; then
      case $_al_arg in
        '' | [0-9]* | *[!A-Za-z0-9_]*)
          echo "setenv: invalid variable name: $_al_arg" >&2
          return 1 ;;
      esac
      _al_want=value
    fi
  done
  if [ $# -lt 2 ] || [ $_al_want = value ]; then
    echo 'usage: setenv NAME value [NAME value ...]' >&2
    return 1
  fi
  _al_set=0
  while [ $# -gt 0 ]; do
    if [ "$1" = setenv ]; then shift; continue; fi
    export "$1=$2" || return 1
    _al_quote "$2"
    printf 'export %s=%s\n' "$1" "$_al_q" >>"$AL_ENV_FILE" || return 1
    _al_set=$((_al_set + 1))
    shift 2
  done
  if [ $_al_set = 1 ]; then echo 'set 1 variable'; else echo "set $_al_set variables"; fi
  unset _al_want _al_arg _al_set _al_rest _al_q
}

if [ -f "$AL_ENV_FILE" ]; then
  # shellcheck source=/dev/null
  . "$AL_ENV_FILE"
fi
:
