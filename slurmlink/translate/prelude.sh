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

# sl_run NAME POLICY [SPEC]... -- ARGV... : run one container, restarting it as the policy says, and record
# it. SPECs are its probes and hooks (slurmlink/translate/probes.py); they run beside it (sl_prober, sl_stop).
sl_run() {
  local name=$1 policy=$2 restarts=0 child="" prober="" stopper="" rc started unhealthy
  shift 2
  sl_name=$name sl_policy=$policy
  sl_specs "$@"; shift "$sl_shift"
  trap 'sl_interrupted=1; sl_stopping=1; sl_kill_tree TERM "$prober"; sl_stop "$child" "$sl_grace" & stopper=$!' TERM
  while :; do
    rm -f -- "status/.$name.unhealthy"
    [ "${#sl_pr_startup[@]}" = 0 ] || sl_put "$name.startup" false
    [ "${#sl_pr_startup[@]}${#sl_pr_readiness[@]}" = 00 ] || sl_put "$name.ready" false
    started=$(sl_now)
    "$@" >>"logs/$name.log" 2>&1 </dev/null &
    child=$!
    if [ "${#sl_pa_poststart[@]}" -gt 0 ] && [ "$sl_stopping" = 0 ] && ! sl_hook poststart -; then
      # the kubelet kills a container whose postStart hook failed, and restarts it as the policy says
      : > "status/.$name.unhealthy"
      sl_stop "$child" "$sl_grace" & stopper=$!
    fi
    sl_put "$name.started" "$started"
    if [ ! -e "status/.$name.unhealthy" ] && [ "$sl_stopping" = 0 ]; then sl_prober "$child" & prober=$!; fi
    sl_wait "$child"; rc=$sl_rc
    # the container ended: its probes stop, and a pending SIGKILL must not hit a process that reuses its pid
    sl_kill_tree TERM "$prober"; sl_kill_tree TERM "$stopper"
    prober="" stopper=""
    unhealthy=0; [ ! -e "status/.$name.unhealthy" ] || unhealthy=1
    # OnFailure restarts a failed container; a liveness/startup/postStart kill restarts it unless Never
    if { { [ "$rc" != 0 ] && [ "$policy" = OnFailure ]; } || { [ "$unhealthy" = 1 ] && [ "$policy" != Never ]; }; } \
       && [ "$sl_stopping" = 0 ] && [ ! -e status/.deadline ] && [ "$restarts" -lt "$sl_max_restarts" ]; then
      restarts=$((restarts + 1))
      sl_put "$name.last" "$rc $started $(sl_now)"
      # `kubectl logs --previous` reads the instance that ended; the new one starts a new log
      mv -f -- "logs/$name.log" "logs/$name.previous.log" 2>/dev/null
      rm -f -- "status/$name.started"
      sl_put "$name.restarts" "$restarts"
      sleep "$((sl_backoff * restarts))" & sl_wait $!
      [ "$sl_stopping" = 0 ] && continue
    fi
    break
  done
  sl_rc=$rc
  [ -e "status/$name.started" ] || sl_put "$name.started" "$started"
  sl_put "$name.finished" "$(sl_now)"
  if [ -e status/.deadline ]; then sl_put "$name.reason" DeadlineExceeded
  elif [ "$sl_stopping" = 1 ]; then sl_put "$name.reason" Killed; fi
  sl_put "$name.exit" "$sl_rc"
  return "$sl_rc"
}

# --- probes and lifecycle hooks (Kubernetes semantics; see docs/probes.md) ---
# sl_specs SPEC... -- : sl_run's probe/hook words into sl_pr_KIND (settings) and sl_pa_KIND (the check's argv);
# sl_shift is how many words were read. KIND is one of a fixed list, never a word from the pod.
sl_specs() {
  sl_pr_startup=() sl_pr_liveness=() sl_pr_readiness=() sl_pr_poststart=() sl_pr_prestop=()
  sl_pa_startup=() sl_pa_liveness=() sl_pa_readiness=() sl_pa_poststart=() sl_pa_prestop=()
  sl_shift=0
  while [ "$1" != -- ]; do
    local what=$1 kind=$2 n
    case $what:$kind in
      probe:startup | probe:liveness | probe:readiness) ;;
      hook:poststart | hook:prestop) ;;
      *) sl_fail "unknown probe or hook $what $kind" ;;
    esac
    local -n settings=sl_pr_$kind argv=sl_pa_$kind
    if [ "$what" = probe ]; then settings=("${@:3:7}"); n=${10}; shift 10; sl_shift=$((sl_shift + 10))
    else settings=("$3" "$4"); n=$5; shift 5; sl_shift=$((sl_shift + 5)); fi
    argv=("${@:1:n}"); shift "$n"; sl_shift=$((sl_shift + n))
    unset -n settings argv
  done
  sl_shift=$((sl_shift + 1))
}

# sl_kill_tree SIG PID : signal PID and every process below it
sl_kill_tree() {
  local c
  [ -n "$2" ] || return 0
  for c in $(pgrep -P "$2" 2>/dev/null); do sl_kill_tree "$1" "$c"; done
  kill "-$1" "$2" 2>/dev/null
  return 0
}

# sl_check TIMEOUT ARGV... : run one check; its status in sl_rc, the start of its output in sl_out, and
# sl_timedout=1 when it was killed after TIMEOUT seconds ("-": no limit)
sl_check() {
  local limit=$1 pid watchdog out="status/.$sl_name.out.$BASHPID" fired="status/.$sl_name.fired.$BASHPID"
  shift
  rm -f -- "$fired"
  "$@" >"$out" 2>&1 </dev/null &
  pid=$!
  sl_timedout=0 watchdog=""
  if [ "$limit" != - ]; then
    # marked before the kill: the watchdog may still be alive when the killed check is reaped
    ( sleep "$limit"; : > "$fired"; sl_kill_tree KILL "$pid" ) >/dev/null 2>&1 &
    watchdog=$!
  fi
  sl_wait "$pid"
  [ -z "$watchdog" ] || sl_kill_tree TERM "$watchdog"
  [ ! -e "$fired" ] || { sl_timedout=1; rm -f -- "$fired"; }
  sl_out=$(head -c 1024 -- "$out" 2>/dev/null); rm -f -- "$out"
  sl_out=${sl_out//[$'\t\r\n']/ }
  if [ "$sl_timedout" = 1 ]; then sl_rc=1; sl_out="timed out after ${limit}s"; fi
}

# sl_note TYPE REASON MESSAGE : one line of status/NAME.events ("SEQ<tab>TYPE<tab>REASON<tab>MESSAGE"; the last
# 8 are kept); the vk turns the lines it has not seen yet into Kubernetes Events
sl_note() {
  local LC_ALL=C  # lengths in bytes: the readers take 4 KiB of a status file
  local file="status/$sl_name.events" last="" seq=0 message=${3//[$'\t\r\n']/ }
  (
    flock 9 2>/dev/null
    [ ! -s "$file" ] || last=$(tail -n 1 -- "$file")
    seq=${last%%$'\t'*}
    case $seq in '' | *[!0-9]*) seq=0 ;; esac
    { [ ! -s "$file" ] || tail -n 7 -- "$file"
      printf '%s\t%s\t%s\t%s\n' "$((seq + 1))" "$1" "$2" "${message:0:300}"; } > "status/.$sl_name.events.$BASHPID"
    mv -f -- "status/.$sl_name.events.$BASHPID" "$file"
  ) 9>>"status/.$sl_name.lock"
}

# sl_hook KIND TIMEOUT : the container's KIND hook, once; a failure is noted (FailedPostStartHook, ...)
sl_hook() {
  local -n settings=sl_pr_$1 argv=sl_pa_$1
  local label=Exec what output
  sl_check "$2" "${argv[@]}"
  # an HTTP hook that got any answer succeeded (the kubelet does not look at the status code of hooks)
  [ "$sl_rc" != 0 ] && { [ "${settings[0]}" != http ] || [ "$sl_rc" != 3 ]; } || return 0
  case ${settings[0]} in http) label=HTTP ;; sleep) label=Sleep ;; esac
  what="exited with $sl_rc" output=$sl_out
  [ "${settings[0]}" = exec ] && [ "$sl_timedout" = 0 ] || { what=$sl_out output=""; }
  what="$label lifecycle hook (${settings[1]}) for Container \"$sl_name\" failed - error: $what, message: \"$output\""
  case $1 in
    poststart) sl_note Warning FailedPostStartHook "$what" ;;
    prestop) sl_note Warning FailedPreStopHook "$what" ;;
  esac
  return 1
}

# sl_stop CHILD GRACE : stop a container as the kubelet does: its preStop hook first (within the grace
# period), then SIGTERM, then SIGKILL when the grace period is over (at least 2 s after SIGTERM)
sl_stop() {
  local child=$1 grace=$2 start=$SECONDS left
  [ -n "$child" ] && kill -0 "$child" 2>/dev/null || return 0  # e.g. deleted while waiting to restart
  [ "${#sl_pa_prestop[@]}" = 0 ] || sl_hook prestop "$grace"
  left=$((grace - (SECONDS - start)))
  [ "${#sl_pa_prestop[@]}" = 0 ] || [ "$left" -ge 2 ] || left=2
  sl_signal TERM "$child"
  sleep "$left"
  kill -KILL "$child" 2>/dev/null
  return 0
}

# sl_probe KIND CHILD : one probe of the container, as the kubelet runs it; returns 0 once a startup probe
# succeeded, 1 after it killed the container (liveness, startup); a readiness probe only writes NAME.ready.
# A check that cannot run here (status 2 of sl_http/sl_grpc: no client for it) "errors": like the kubelet,
# the probe's result then stays what it was (not ready; never killed; not started).
sl_probe() {
  local kind=$1 child=$2 ok=0 bad=0 errored=0 ready="" label message
  local -n settings=sl_pr_$1 argv=sl_pa_$1
  local action=${settings[0]} delay=${settings[1]} period=${settings[2]} timeout=${settings[3]}
  local need_ok=${settings[4]} need_bad=${settings[5]} grace=${settings[6]}
  label=${kind^}
  sleep "$delay"
  while kill -0 "$child" 2>/dev/null; do
    sl_check "$timeout" "${argv[@]}"
    if [ "$sl_rc" = 0 ]; then
      ok=$((ok + 1)) bad=0
      if [ "$ok" -ge "$need_ok" ]; then
        [ "$kind" != startup ] || return 0
        [ "$kind" != readiness ] || [ "$ready" = true ] || { ready=true; sl_put "$sl_name.ready" true; }
      fi
    elif [ "$action" != exec ] && [ "$sl_rc" = 2 ]; then
      [ "$errored" = 1 ] || sl_note Warning Unhealthy "$label probe errored: $sl_out"
      errored=1
    else
      bad=$((bad + 1)) ok=0
      sl_note Warning Unhealthy "$label probe failed: $sl_out"
      if [ "$bad" -ge "$need_bad" ]; then
        if [ "$kind" = readiness ]; then
          [ "$ready" = false ] || { ready=false; sl_put "$sl_name.ready" false; }
        else
          : > "status/.$sl_name.unhealthy"
          message="Container $sl_name failed $kind probe"
          # `restarts` is sl_run's (bash scoping is dynamic): past the site's limit there is no restart
          [ "$sl_policy" = Never ] || [ "$restarts" -ge "$sl_max_restarts" ] || message="$message, will be restarted"
          sl_note Normal Killing "$message"
          sl_stop "$child" "$grace"
          return 1
        fi
      fi
    fi
    sleep "$period"
  done
  return 1
}

# sl_prober CHILD : the container's probes, in the background; the startup probe gates the others
sl_prober() {
  trap - TERM
  if [ "${#sl_pr_startup[@]}" -gt 0 ]; then
    sl_probe startup "$1" || return 0
    sl_put "$sl_name.startup" true
  fi
  if [ "${#sl_pr_readiness[@]}" -gt 0 ]; then sl_probe readiness "$1" &
  elif [ "${#sl_pr_startup[@]}" -gt 0 ]; then sl_put "$sl_name.ready" true; fi
  [ "${#sl_pr_liveness[@]}" = 0 ] || sl_probe liveness "$1" &
  wait
}

# sl_http SCHEME HOST PORT PATH NHEADERS (NAME VALUE)... : an httpGet check; 0 for a 2xx/3xx answer, 3 for
# another answer, 1 for none.
# HTTP goes through bash's /dev/tcp (no client needed on the node); HTTPS needs curl (2 without it).
sl_http() {
  local scheme=$1 host=$2 port=$3 path=$4 n=$5 i line code extra="" ua="kube-probe/slurmlink" accept="*/*"
  local hostport=$host:$port url
  [ "$port" != 80 ] || [ "$scheme" != HTTP ] || hostport=$host
  url="${scheme,,}://$host:$port$path"
  shift 5
  local -a names=() values=()
  for ((i = 0; i < n; i++)); do names+=("$1"); values+=("$2"); shift 2; done
  if [ "$scheme" = HTTPS ]; then
    command -v curl >/dev/null || { echo "HTTPS probes need curl on the compute node"; return 2; }
    local -a args=(-k -s -o /dev/null -w '%{http_code}' -A "$ua" -H "Accept: $accept")
    for ((i = 0; i < n; i++)); do args+=(-H "${names[i]}: ${values[i]}"); done
    code=$(curl "${args[@]}" -- "$url") || { echo "Get \"$url\": connection failed"; return 1; }
  else
    for ((i = 0; i < n; i++)); do
      case ${names[i],,} in host) hostport=${values[i]} ;; user-agent) ua=${values[i]} ;; accept) accept=${values[i]} ;;
        *) extra+="${names[i]}: ${values[i]}"$'\r\n' ;; esac
    done
    { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null \
      || { echo "Get \"$url\": dial tcp $host:$port: connect: connection refused"; return 1; }
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: %s\r\n%sConnection: close\r\n\r\n' \
      "$path" "$hostport" "$ua" "$accept" "$extra" >&3
    IFS= read -r line <&3
    read -r -t 1 -N 10240 _ <&3  # the start of the body, like the kubelet (closing early resets the server)
    exec 3<&-
    code=${line#* }; code=${code%% *}
  fi
  case $code in
    [23][0-9][0-9]) return 0 ;;
    [0-9][0-9][0-9]) echo "HTTP probe failed with statuscode: $code"; return 3 ;;
    *) echo "Get \"$url\": no HTTP answer"; return 1 ;;
  esac
}

# sl_tcp HOST PORT : a tcpSocket check, through bash's /dev/tcp
sl_tcp() {
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || { echo "dial tcp $1:$2: connect: connection refused"; return 1; }
  exec 3<&-
}

# sl_grpc PORT SERVICE : a grpc check, with grpc_health_probe when the node has it (2 without it)
sl_grpc() {
  command -v grpc_health_probe >/dev/null \
    || { echo "grpc probes need grpc_health_probe on the compute node, which it lacks"; return 2; }
  grpc_health_probe "-addr=127.0.0.1:$1" ${2:+"-service=$2"} || return 1
}
# --- end of probes and hooks ---

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
