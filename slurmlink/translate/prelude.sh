# --- slurmlink job prelude: constant code, nothing in it comes from the pod ---
sl_stopping=0
sl_now() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
# status files are replaced atomically so a reader never sees half a value
sl_put() { printf '%s\n' "$2" > "status/.$1.$BASHPID" && mv -f -- "status/.$1.$BASHPID" "status/$1"; }
sl_fail() { echo "slurmlink: $*" >&2; exit 121; }
# sl_dir PATH : the directory part of PATH, kept exact ($(...) alone would drop trailing newlines of a name)
sl_dir() { sl_d=$(dirname -- "$1"; echo .); sl_d=${sl_d%$'\n.'}; }
# sl_file PATH MODE <<base64 : one file of a volume
sl_file() { sl_dir "$1" && mkdir -p -- "$sl_d" && base64 -d > "$1" && chmod "$2" -- "$1" || sl_fail "cannot write $1"; }
# sl_link MOUNT-ROOT DESTINATION SOURCE : the host runtime's stand-in for a bind mount
sl_link() { sl_dir "$2" && mkdir -p -- "$1$sl_d" && ln -sfn -- "$3" "$1$2" || sl_fail "cannot link $2"; }

# SLURM's job variables (SLURM_JOB_ID, SLURM_CPUS_PER_TASK, ...) are the only ones a container inherits.
sl_slurm_env() { local v; sl_keep=(); for v in "${!SLURM_@}"; do sl_keep+=("$v=${!v}"); done; }
# sl_env DIR NAME=VALUE... ARGV... : a host-runtime container, with a clean environment, started in DIR
sl_env() { local dir=$1; shift; sl_slurm_env; exec env -i -C "$dir" "${sl_keep[@]}" "$@"; }

# sl_wait PID : wait until PID really ended (a trapped signal interrupts `wait`); status in sl_rc
sl_wait() {
  while :; do
    sl_interrupted=0
    wait "$1"; sl_rc=$?
    [ "$sl_interrupted" = 1 ] || return 0
  done
}

# sl_signal SIG PID : signal a container. bwrap passes no signal on (and would SIGKILL its child when it
# dies), so a bwrap container's own processes get the signal instead.
sl_signal() {
  local comm=""
  read -r comm < "/proc/$2/comm" 2>/dev/null
  if [ "$comm" = bwrap ]; then pkill "-$1" -P "$2"; else kill "-$1" "$2"; fi 2>/dev/null
}

# sl_run NAME POLICY -- ARGV... : run one container, restarting it as the policy says, and record it
sl_run() {
  local name=$1 policy=$2 restarts=0 child
  shift 3
  trap 'sl_interrupted=1; sl_stopping=1; sl_signal TERM "$child"
        (sleep "$sl_grace"; kill -KILL "$child" 2>/dev/null) &' TERM
  while :; do
    sl_put "$name.started" "$(sl_now)"
    "$@" >>"logs/$name.log" 2>&1 </dev/null &
    child=$!
    sl_wait "$child"
    if [ "$sl_rc" != 0 ] && [ "$policy" = OnFailure ] && [ "$sl_stopping" = 0 ] \
       && [ ! -e status/.deadline ] && [ "$restarts" -lt "$sl_max_restarts" ]; then
      restarts=$((restarts + 1))
      sl_put "$name.restarts" "$restarts"
      sleep "$((sl_backoff * restarts))"
      continue
    fi
    break
  done
  sl_put "$name.finished" "$(sl_now)"
  if [ -e status/.deadline ]; then sl_put "$name.reason" DeadlineExceeded
  elif [ "$sl_stopping" = 1 ]; then sl_put "$name.reason" Killed; fi
  sl_put "$name.exit" "$sl_rc"
  return "$sl_rc"
}

# sl_bwrap EXE ROOTFS CHDIR HOSTNAME NENV ENV... NMOUNTS (SRC DST RO)... -- ARGV... : a rootless container.
# sl_resolve ROOT PATH : PATH with the symlinks of ROOT's tree followed inside ROOT, into sl_r (a Debian
# root has /var/run -> /run: a mount point below it must be made below /run, not over the link)
sl_resolve() {
  local root=${1%/} rest=$2 done="" part link hops=0
  while [ -n "$rest" ]; do
    rest=${rest#/}; part=${rest%%/*}
    if [ "$part" = "$rest" ]; then rest=""; else rest=/${rest#*/}; fi
    case $part in "" | .) continue ;; ..) done=${done%/*}; continue ;; esac
    if [ -L "$root$done/$part" ] && [ $((hops += 1)) -le 40 ]; then
      link=$(readlink -- "$root$done/$part"; echo .); link=${link%$'\n.'}
      case $link in /*) done=""; rest=$link$rest ;; *) rest=/$link$rest ;; esac
    else
      done=$done/$part
    fi
  done
  sl_r=${done:-/}
}
# sl_box_file PATH : where PATH of the container is on the host (through its binds, else in ROOT), into sl_h
sl_box_file() {
  local i; sl_resolve "$root" "$1"
  for ((i = ${#bsrc[@]} - 1; i >= 0; i--)); do
    case $sl_r in "${bdst[i]}" | "${bdst[i]}"/*) sl_h=${bsrc[i]}${sl_r#"${bdst[i]}"}; return ;; esac
  done
  case $sl_r in /tmp/*) sl_h=""; return ;; esac  # an empty tmpfs in the container
  sl_h=${root%/}$sl_r
}
# sl_box_exec ARGV0 PATH WD : find ARGV0 as execvp will inside the container; 127 not found, 126 not executable
# (bwrap itself exits 1 when its execvp fails; Kubernetes' runtimes answer 127/126)
sl_box_exec() {
  local dir
  case $1 in /dev/* | /proc/*) return 0 ;; esac
  if [[ $1 == */* ]]; then
    if [[ $1 == /* ]]; then sl_box_file "$1"; else sl_box_file "$3/$1"; fi
    [ -e "$sl_h" ] || return 127
    [ -f "$sl_h" ] && [ -x "$sl_h" ] || return 126
    return 0
  fi
  while IFS= read -r -d : dir; do
    sl_box_file "${dir:-$3}/$1"
    [ -f "$sl_h" ] && [ -x "$sl_h" ] && return 0
  done <<< "$2:"
  return 127
}
# A mount point missing from the read-only root is made on a tmpfs "underlay" that re-binds what the
# directory held, the way container runtimes add mount points to an image they may not change.
sl_bwrap() {
  local exe=$1 root=$2 wd=$3 host=$4 n i src dst ro parent entry path=/bin:/usr/bin
  local -a env=() args=() mounts=() under=() bsrc=() bdst=()
  shift 4; n=$1; shift
  for ((i = 0; i < n; i++)); do env+=("$1"); [[ $1 != PATH=* ]] || path=${1#PATH=}; shift; done
  n=$1; shift
  for ((i = 0; i < n; i++)); do
    src=$1 ro=$3; sl_resolve "$root" "$2"; dst=$sl_r; shift 3
    bsrc+=("$src") bdst+=("$dst")
    if [ "$ro" = ro ]; then mounts+=(--ro-bind "$src" "$dst"); else mounts+=(--bind "$src" "$dst"); fi
    case $dst in /tmp/* | /dev/* | /proc/*) continue ;; esac
    parent=$dst
    while [ ! -e "$root$parent" ]; do sl_dir "$parent"; parent=$sl_d; done
    [ "$parent" != "$dst" ] && under+=("$parent")
  done
  shift  # the "--"
  args=(--die-with-parent --unshare-ipc --unshare-uts --hostname "$host" --ro-bind "$root" /)
  # shallow underlays first, so a deeper one is not hidden by its parent's re-binds
  while IFS= read -r parent; do
    [ -n "$parent" ] || continue
    args+=(--tmpfs "$parent")
    for entry in "${root%/}${parent%/}"/* "${root%/}${parent%/}"/.[!.]*; do
      [ -e "$entry" ] || [ -L "$entry" ] || continue
      case ${parent%/}/${entry##*/} in /dev | /proc | /tmp) continue ;; esac
      if [ -L "$entry" ]; then args+=(--symlink "$(readlink -- "$entry")" "${parent%/}/${entry##*/}")
      else args+=(--ro-bind "$entry" "${parent%/}/${entry##*/}"); fi
    done
  done < <(printf '%s\n' "${under[@]-}" | awk -F/ '{ print NF "\t" $0 }' | sort -k1,1n -k2 | uniq | cut -f2-)
  args+=(--dev /dev --proc /proc --tmpfs /tmp)
  sl_box_exec "$1" "$path" "$wd"
  case $? in
    127) echo "slurmlink: exec: \"$1\": executable file not found in \$PATH" >&2; exit 127 ;;
    126) echo "slurmlink: exec: \"$1\": permission denied" >&2; exit 126 ;;
  esac
  sl_slurm_env
  exec env -i "${sl_keep[@]}" "${env[@]}" "$exe" "${args[@]}" "${mounts[@]}" --chdir "$wd" -- "$@"
}

sl_children=()
sl_on_term() {
  sl_interrupted=1; sl_stopping=1
  [ "${#sl_children[@]}" -gt 0 ] && kill -TERM "${sl_children[@]}" 2>/dev/null
}
trap sl_on_term TERM
# --- end of prelude ---
