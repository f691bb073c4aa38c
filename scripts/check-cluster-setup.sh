#!/usr/bin/env bash
# Runs cluster.yaml's setup_commands and head_setup_commands in an Ubuntu 22.04 (jammy) chroot, the release
# of the AMI that cluster.yaml names, and checks that they install the pinned versions (constraints.txt).
#
#   sudo scripts/check-cluster-setup.sh [ROOT]        # ROOT: the chroot, default /var/tmp/jammy-root
#
# Needs root, http://archive.ubuntu.com and pip's index (the pip configuration of the user who runs this is
# copied into the chroot and the local package directories it points at are bind-mounted there read-only).
# ROOT is made with debootstrap once and reused; each run starts the user's state afresh (no venv, the stock
# ~/.bashrc, an empty stand-in for the shared file system) so the commands run as on a new node. Writes
# results/cluster-setup-jammy.txt (the report) and ROOT.log (every command's full output).
#
# What differs from a real head node, and why (the report repeats it):
# - Python 3.11 is CPython 3.11.2 built from its release source in the chroot (Debian's source package of
#   python3.11, whose .orig tarball is CPython's own; fetched on the host with apt-get source) and installed in
#   /usr/local, before the setup commands: it stands in for the deadsnakes PPA's build, unreachable from here.
#   The Python command's guard (a final 3.11 release) then passes and its PPA branch does not run. Ubuntu's own
#   jammy-updates python3.11 (3.11.0~rc1) is installed too, to show that the guard refuses it: the pinned torch
#   cannot be imported on that release candidate.
# - No NFS server: /mnt/shared is a bind mount of a local folder (ROOT.shared), so the EFS command's own
#   `mountpoint -q /mnt/shared ||` guard skips the NFS mount; the rest of that command runs as written.
# - No systemd in a chroot: the MLflow unit command runs with `systemctl` shadowed by a shim that records its
#   calls; the unit file it writes is then parsed and its ExecStart run on 127.0.0.1 to show the server answers.
# - The image: debootstrap's jammy plus what the AMI also has (sudo, ca-certificates, curl, build-essential),
#   not the AMI itself (no NVIDIA driver, no GPU: torch is installed but CUDA is not exercised).
# - The start commands (ray stop / ray start) are not run.
# - The host's extra CA certificates (/usr/local/share/ca-certificates) are added to the chroot's trust store:
#   this host reaches pip's index through a TLS proxy that only they make trusted.
# Environment: MIRROR (default http://archive.ubuntu.com/ubuntu), CONTINUE_ON_FAIL=1 (run the remaining setup
# commands after one fails; Ray itself stops at the first failure), PYTHON (a Python with PyYAML, default
# REPO/.venv/bin/python).
set -uo pipefail

ROOT=$(realpath -m "${1:-/var/tmp/jammy-root}")
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
MIRROR=${MIRROR:-http://archive.ubuntu.com/ubuntu}
SUITE=jammy
SHARED=$ROOT.shared                  # stands in for the EFS file system at /mnt/shared
LOG=$ROOT.log                        # full output of every step
RESULT=$REPO/results/cluster-setup-jammy.txt
REPORT=$(mktemp /tmp/cluster-setup-report.XXXXXX)
KEYRING=/var/tmp/ubuntu-archive-keyring-2018.gpg
UBUNTU_KEY_FPR=F6ECB3762474EDA9D21B7022871920D1991BC93C   # Ubuntu Archive Automatic Signing Key (2018)
BASELINE_PKGS="sudo ca-certificates curl build-essential"  # on the AMI, not in debootstrap's jammy
PY311_PKGS="python3.11 python3.11-venv python3.11-dev"     # Ubuntu's (3.11.0~rc1): the guard must refuse it
PY_SRC_DIR=/var/tmp/python3.11-source                        # Debian's source of python3.11, fetched once
PY_BUILD_DEPS="libssl-dev zlib1g-dev libbz2-dev liblzma-dev libffi-dev libsqlite3-dev libreadline-dev uuid-dev
  libncursesw5-dev libgdbm-dev libgdbm-compat-dev"          # CPython's optional modules that the pins use
PY_FINAL_CHECK='import sys; sys.exit(sys.version_info.releaselevel != "final")'   # cluster.yaml's guard
MOUNTS=()                            # what this run mounted, unmounted in reverse order on exit
START_EPOCH=$(date +%s)
FAILED_SETUP=""

[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap, chroot, mount)" >&2; exit 2; }
[ -x "$PY" ] || { echo "no Python at $PY (set PYTHON= to one with PyYAML)" >&2; exit 2; }
case "$ROOT" in /|/bin|/boot|/dev|/etc|/home|/lib*|/opt|/proc|/root|/run|/sbin|/sys|/tmp|/usr|/var|/var/tmp)
  echo "refusing ROOT=$ROOT" >&2; exit 2;; esac
: > "$LOG"

say() { printf '%s\n' "$*" | tee -a "$REPORT" "$LOG"; }
log() { printf '%s\n' "$*" >> "$LOG"; }
now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------- mounts and clean-up
do_mount() {  # do_mount TARGET mount-args...
  mkdir -p "$1" && mount "${@:2}" "$1" && MOUNTS+=("$1")
}
bind_ro() {  # bind_ro SRC TARGET
  do_mount "$2" --bind "$1" && mount -o remount,bind,ro "$2"
}
chroot_pids() {  # processes whose root is ROOT (only ever ones this script started there)
  local p r
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    [ "$r" = "$ROOT" ] && echo "${p#/proc/}"
  done
}
cleanup() {
  local rc=$? i pids
  pids=$(chroot_pids)
  if [ -n "$pids" ]; then
    log "clean-up: ending processes left in the chroot: $pids"
    kill -TERM $pids 2>/dev/null; sleep 2
    pids=$(chroot_pids); [ -n "$pids" ] && kill -KILL $pids 2>/dev/null; sleep 1
  fi
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
    umount "${MOUNTS[i]}" 2>>"$LOG" || umount -l "${MOUNTS[i]}" 2>>"$LOG"
  done
  if findmnt -rn -o TARGET | grep -q "^$ROOT\(/\|$\)"; then
    echo "WARNING: mounts left under $ROOT:" >&2; findmnt -rn -o TARGET | grep "^$ROOT\(/\|$\)" >&2
  fi
  rm -f "$REPORT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- running things in the chroot
PIP_ENV=()
while IFS= read -r v; do PIP_ENV+=("$v"); done < <(env | grep '^PIP_' || true)
ubuntu_env() {
  local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/usr/local/games:/snap/bin
  printf '%s\0' HOME=/home/ubuntu USER=ubuntu LOGNAME=ubuntu SHELL=/bin/bash PATH=$path LANG=C.UTF-8 TERM=dumb \
    "${PIP_ENV[@]}"
}
in_root() {  # in_root CMD... : as root in the chroot, a clean environment
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive TERM=dumb "$@"
}
as_ubuntu() {  # as_ubuntu 'bash code' : a login shell of ubuntu in its home
  local -a e; mapfile -d '' e < <(ubuntu_env)
  chroot "$ROOT" /usr/bin/env -i -C /home/ubuntu "${e[@]}" /usr/sbin/runuser -u ubuntu -- /bin/bash -lc "$1"
}
as_ubuntu_like_ray() {  # as_ubuntu_like_ray 'cmd' : what Ray's SSH command runner runs on the node for a setup command
  local -a e; mapfile -d '' e < <(ubuntu_env)
  chroot "$ROOT" /usr/bin/env -i -C /home/ubuntu "${e[@]}" /usr/sbin/runuser -u ubuntu -- /bin/bash --login -c -i \
    "source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && ($1)" </dev/null
}

STEP_LINES=()
step() {  # step LABEL FUNC ARGS... : runs, times, logs; returns the command's status
  local label=$1 t0 t1 rc out; shift
  out=$(mktemp)
  log ""; log "=== $label"; log "\$ ${*}"
  t0=$(now); "$@" >"$out" 2>&1 </dev/null; rc=$?; t1=$(now)
  cat "$out" >> "$LOG"
  STEP_LINES+=("$(printf '%-4s %6ss  %s' "$rc" "$(dt "$t0" "$t1")" "$label")")
  printf '  [exit %s, %ss] %s\n' "$rc" "$(dt "$t0" "$t1")" "$label" | tee -a "$REPORT"
  if [ "$rc" != 0 ]; then
    echo "    last lines of its output:" | tee -a "$REPORT"
    grep -v -e 'cannot set terminal process group' -e 'no job control in this shell' "$out" | tail -n 25 \
      | sed 's/^/    | /' | tee -a "$REPORT"
  fi
  LAST_OUT_FILE_CONTENT=$(grep -v -e 'cannot set terminal process group' -e 'no job control in this shell' "$out")
  rm -f "$out"
  return "$rc"
}
die() { say "FATAL: $*"; exit 1; }

# ================================================================ 1. the chroot
say "cluster.yaml setup commands on Ubuntu 22.04 (jammy), in a chroot"
say "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "host:        $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(nproc) CPUs"
say "repository:  $REPO at $(git -C "$REPO" rev-parse --short HEAD) ($(git -C "$REPO" log -1 --format=%s HEAD | cut -c1-80))"
dirty=$(git -C "$REPO" status --porcelain --untracked-files=no | wc -l)
say "             copied: the files tracked at HEAD (git archive HEAD); $dirty tracked file(s) modified in the work tree, not copied"
say "chroot:      $ROOT (log of every command: $LOG)"
say ""
say "== Preparing the chroot"

prep_host() {
  if ! command -v debootstrap >/dev/null || [ ! -e /usr/share/debootstrap/scripts/$SUITE ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap || return 1
  fi
  if [ ! -s "$KEYRING" ]; then   # Debian 12 has no ubuntu-keyring package: take Ubuntu's, check the key's fingerprint
    local tmp; tmp=$(mktemp -d)
    curl -fsS -o "$tmp/k.deb" "$MIRROR/pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb" &&
      dpkg-deb -x "$tmp/k.deb" "$tmp/x" &&
      cp "$tmp/x/etc/apt/trusted.gpg.d/ubuntu-keyring-2018-archive.gpg" "$tmp/key.gpg" || { rm -rf "$tmp"; return 1; }
    local fpr; fpr=$(gpg --homedir "$tmp" --show-keys --with-colons "$tmp/key.gpg" 2>/dev/null | awk -F: '/^fpr/{print $10; exit}')
    [ "$fpr" = "$UBUNTU_KEY_FPR" ] || { echo "unexpected key fingerprint $fpr"; rm -rf "$tmp"; return 1; }
    cp "$tmp/key.gpg" "$KEYRING"; rm -rf "$tmp"
  fi
  echo "debootstrap $(dpkg-query -W -f='${Version}' debootstrap), keyring $KEYRING ($UBUNTU_KEY_FPR)"
}
step "host: debootstrap and Ubuntu's archive key" prep_host || die "cannot prepare the host"

make_root() {
  if [ -e "$ROOT/.debootstrap-complete" ]; then echo "reusing $ROOT"; return 0; fi
  if [ -e "$ROOT" ] && [ -n "$(ls -A "$ROOT" 2>/dev/null)" ]; then
    echo "$ROOT exists but is no complete debootstrap (no .debootstrap-complete): remove it and rerun"; return 1
  fi
  debootstrap --arch=amd64 --components=main,universe --keyring="$KEYRING" "$SUITE" "$ROOT" "$MIRROR" &&
    touch "$ROOT/.debootstrap-complete"
}
REUSED=no; [ -e "$ROOT/.debootstrap-complete" ] && REUSED=yes
step "debootstrap $SUITE amd64 (default variant, main+universe) into $ROOT (reused: $REUSED)" make_root \
  || die "debootstrap failed"

mount_root() {
  do_mount "$ROOT/proc" -t proc proc &&
  do_mount "$ROOT/sys" -t sysfs sysfs &&
  do_mount "$ROOT/dev" --bind /dev &&
  do_mount "$ROOT/dev/pts" --bind /dev/pts &&
  do_mount "$ROOT/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm &&
  mkdir -p "$SHARED" && do_mount "$ROOT/mnt/shared" --bind "$SHARED" || return 1
  findmnt -rn -o TARGET,FSTYPE,OPTIONS | grep "^$ROOT"
}
step "mount /proc /sys /dev /dev/pts /dev/shm, and $SHARED at /mnt/shared (the EFS stand-in)" mount_root || die "mounts failed"

base_system() {
  cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main restricted universe multiverse
deb $MIRROR $SUITE-updates main restricted universe multiverse
deb $MIRROR $SUITE-security main restricted universe multiverse
EOF
  rm -f "$ROOT/etc/resolv.conf"; cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$(hostname)" > "$ROOT/etc/hosts"
  # a chroot: packages must not start services (what Docker's Ubuntu images do too)
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  in_root apt-get update -q && in_root apt-get install -y -q $BASELINE_PKGS || return 1
  # This host reaches pip's index through a TLS proxy whose CA only the host trusts: add the host's own extra CAs
  # (/usr/local/share/ca-certificates, where Debian keeps them) to the chroot's bundle, as a node behind such a
  # proxy would need too. Without them pip fails with CERTIFICATE_VERIFY_FAILED, a fault of this sandbox.
  local ca
  for ca in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$ca" ] || continue
    cp "$ca" "$ROOT/usr/local/share/ca-certificates/" && echo "host CA added: $ca"
  done
  in_root update-ca-certificates >/dev/null || return 1
  mkdir -p "$ROOT/etc/systemd/system"
  # the user of the AMI: ubuntu, passwordless sudo (as cloud-init sets it up)
  in_root id ubuntu >/dev/null 2>&1 || in_root useradd -m -s /bin/bash -u 1000 -G sudo,adm ubuntu || return 1
  echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' > "$ROOT/etc/sudoers.d/90-cloud-init-users"
  chmod 440 "$ROOT/etc/sudoers.d/90-cloud-init-users"
  in_root runuser -u ubuntu -- sudo -n true && echo "sudo for ubuntu: ok"
}
step "base system: apt sources (main restricted universe multiverse, -updates, -security), $BASELINE_PKGS, user ubuntu with passwordless sudo" \
  base_system || die "base system failed"

ubuntu_py311() {
  in_root apt-get install -y -q $PY311_PKGS || return 1
  in_root dpkg-query -W $PY311_PKGS
  if in_root /usr/bin/python3.11 -c "$PY_FINAL_CHECK"; then
    echo "cluster.yaml's guard accepts /usr/bin/python3.11 $(in_root /usr/bin/python3.11 -V)"; return 1
  fi
  echo "cluster.yaml's guard refuses it: $(in_root /usr/bin/python3.11 -c 'import sys; print(sys.version_info)')"
}
step "Ubuntu's own python3.11 from jammy-updates ($PY311_PKGS): a release candidate, which cluster.yaml's guard must refuse" \
  ubuntu_py311 || die "Ubuntu's python3.11 is missing, or cluster.yaml's guard accepts it"
UBUNTU_PY311_VERSION=$(in_root dpkg-query -W -f='${Version}' python3.11)

py311_source() {  # on the host (Debian): the source package, its hashes checked against the signed Sources index
  if compgen -G "$PY_SRC_DIR/python3.11_*.orig.tar.gz" >/dev/null; then echo "reusing $PY_SRC_DIR"; return 0; fi
  local list=/etc/apt/sources.list.d/zz-check-cluster-setup-src.sources rc
  printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm' 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$list"
  mkdir -p "$PY_SRC_DIR"
  apt-get update -q && (cd "$PY_SRC_DIR" && apt-get source --download-only python3.11); rc=$?
  rm -f "$list"; apt-get update -q >/dev/null
  ls -l "$PY_SRC_DIR"
  return "$rc"
}
step "host: the source of CPython 3.11 (Debian bookworm's python3.11 source package, into $PY_SRC_DIR)" \
  py311_source || die "cannot fetch CPython's source"

py311_build() {  # CPython from its release tarball, in the chroot with jammy's compiler and libraries
  local py=/usr/local/bin/python3.11 tarball
  if in_root "$py" -c "$PY_FINAL_CHECK" 2>/dev/null; then echo "reusing $py ($(in_root "$py" -V))"; return 0; fi
  in_root apt-get install -y -q $PY_BUILD_DEPS || return 1
  tarball=$(compgen -G "$PY_SRC_DIR/python3.11_*.orig.tar.gz" | head -1)
  rm -rf "$ROOT/usr/src/cpython" && mkdir -p "$ROOT/usr/src/cpython" &&
    tar -xzf "$tarball" -C "$ROOT/usr/src/cpython" --strip-components=1 || return 1
  in_root /bin/sh -c 'cd /usr/src/cpython && ./configure -q --prefix=/usr/local --with-ensurepip=install &&
    make -s -j"$(nproc)" >/dev/null && make -s altinstall >/dev/null' || return 1
  rm -rf "$ROOT/usr/src/cpython"
  in_root "$py" -c 'import sys, ssl, sqlite3, ctypes, lzma, bz2, zlib, readline, uuid; print(sys.version)' &&
    in_root "$py" -c "$PY_FINAL_CHECK"
}
step "CPython 3.11 built from that source in the chroot, into /usr/local (in place of deadsnakes' build, unreachable here)" \
  py311_build || die "cannot build CPython 3.11"
PY311_VERSION=$(in_root /usr/local/bin/python3.11 -c 'import platform; print(platform.python_version())')

fresh_state() {
  local h=$ROOT/home/ubuntu
  rm -rf "$h/autowu-venv" "$h/autowu-bench" "$h/ray_bootstrap_config.yaml"
  cp "$ROOT/etc/skel/.bashrc" "$ROOT/etc/skel/.profile" "$h/"
  rm -f "$ROOT/etc/systemd/system/autowu-mlflow.service" "$ROOT/usr/local/sbin/systemctl" "$ROOT/var/log/systemctl-shim.log"
  find "$SHARED" -mindepth 1 -delete
  # the repository as `ray up` syncs it before the setup commands (file_mounts: ~/autowu-bench: .)
  mkdir -p "$h/autowu-bench" && git -C "$REPO" archive HEAD | tar -x -C "$h/autowu-bench" || return 1
  in_root chown -R ubuntu:ubuntu /home/ubuntu
  echo "repository files: $(find "$h/autowu-bench" -type f | wc -l); pip cache kept: $(du -sh "$h/.cache/pip" 2>/dev/null | cut -f1 || echo none)"
}
step "fresh node state: no ~/autowu-venv, stock ~/.bashrc, empty /mnt/shared; repository (HEAD) at ~/autowu-bench" \
  fresh_state || die "cannot reset the user's state"

PIP_NOTES=()
pip_config() {
  # pip's configuration here: its files (global ones at the same path, the user's under ubuntu's home), the PIP_*
  # variables (passed to every command), and the local folders and files they name (bind-mounted read-only / copied)
  local section="" line f dest val p
  while IFS= read -r line; do
    case "$line" in
      global:|site:|user:|env:|env_var:) section=${line%:};;
      *", exists: True")
        f=$(echo "$line" | sed 's/^ *//; s/, exists: True$//')
        case "$section" in
          global) dest=$ROOT$f;;
          user) dest=$ROOT/home/ubuntu${f#"$HOME"};;
          *) continue;;
        esac
        mkdir -p "$(dirname "$dest")" && cp "$f" "$dest" && echo "config file $f -> ${dest#"$ROOT"}"
        PIP_NOTES+=("pip config file $f -> ${dest#"$ROOT"}");;
    esac
  done < <(pip config debug 2>/dev/null)
  in_root chown -R ubuntu:ubuntu /home/ubuntu/.config
  for val in $(pip config list 2>/dev/null | sed "s/^[^=]*=//; s/^'//; s/'$//") "${PIP_ENV[@]#*=}"; do
    for p in $val; do
      p=${p#file://}
      case "$p" in /*) ;; *) continue;; esac
      [ -e "$p" ] || continue
      if [ -d "$p" ]; then
        [ "$(basename "$p")" = simple ] && p=$(dirname "$p")   # a simple index links to ../../files
        findmnt -rn -o TARGET | grep -qx "$ROOT$p" && continue
        bind_ro "$p" "$ROOT$p" && echo "bind-mounted read-only: $p" && PIP_NOTES+=("bind-mounted read-only: $p")
      elif [ ! -e "$ROOT$p" ]; then
        mkdir -p "$(dirname "$ROOT$p")" && cp "$p" "$ROOT$p" && echo "copied: $p" && PIP_NOTES+=("copied: $p")
      fi
    done
  done
  echo "PIP_* variables passed: ${PIP_ENV[*]:-none}"
}
step "pip's configuration of this host into the chroot" pip_config || die "cannot copy pip's configuration"

OS_RELEASE=$(. "$ROOT/etc/os-release"; echo "$PRETTY_NAME ($VERSION_CODENAME)")
GLIBC=$(in_root ldd --version | head -1 | awk '{print $NF}')
say ""
say "chroot system: $OS_RELEASE, glibc $GLIBC, python3.11 $PY311_VERSION (built from CPython's source, /usr/local);"
say "               Ubuntu's python3.11 $UBUNTU_PY311_VERSION (jammy-updates, /usr/bin) refused by cluster.yaml's guard"
for ca in "$ROOT"/usr/local/share/ca-certificates/*.crt; do
  [ -e "$ca" ] && say "  the host's CA ${ca#"$ROOT"} added to the chroot's trust store (this host's TLS proxy)"
done
for n in "${PIP_NOTES[@]}"; do say "  $n"; done
say "  PIP_* variables passed to every command: ${PIP_ENV[*]:-none}"

# ================================================================ 2. the setup commands from cluster.yaml
mapfile -d '' CMDS < <("$PY" - "$REPO/cluster.yaml" <<'EOF'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
for section in ("setup_commands", "head_setup_commands"):
    for i, cmd in enumerate(c.get(section) or []):
        sys.stdout.write(f"{section}[{i}]\0{cmd}\0")
EOF
) || die "cannot read cluster.yaml"
[ "${#CMDS[@]}" -ge 2 ] || die "no setup commands found in cluster.yaml"

say ""
say "== cluster.yaml's setup_commands then head_setup_commands (the head runs both), each as ubuntu in its home"
say "   the way Ray's SSH runner does: bash --login -c -i 'source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && (CMD)'"

SYSTEMD_LABEL=""
SKIPPED=()
OUTCOMES=()
for ((k=0; k<${#CMDS[@]}; k+=2)); do
  label=${CMDS[k]}; cmd=${CMDS[k+1]}
  say ""
  say "-- $label"
  printf '%s\n' "$cmd" | fold -s -w 110 | sed 's/^/   $ /' | tee -a "$REPORT"
  if [ -n "$FAILED_SETUP" ] && [ "${CONTINUE_ON_FAIL:-0}" != 1 ]; then
    say "   NOT RUN: an earlier setup command failed (Ray stops there too)"; OUTCOMES+=("$label: not run"); continue
  fi
  note=""
  if [[ "$cmd" == *"mount -t nfs"* ]]; then
    note="EFS: NFS mount SKIPPED (no NFS server here); /mnt/shared is a bind mount (stand-in), so the command's own mountpoint guard skips the mount and the rest runs as written"
    SKIPPED+=("$label: the NFS mount of EFS (no NFS server in a chroot); /mnt/shared is a local bind mount, which the command's 'mountpoint -q /mnt/shared ||' guard accepts, so apt-get/nfs-common/mkdir/chown ran as written")
    as_ubuntu 'mountpoint /mnt/shared' | sed 's/^/   check: /' | tee -a "$REPORT"
  fi
  if [[ "$cmd" == *"add-apt-repository"* ]]; then
    note="Python: python3.11 $PY311_VERSION (built from CPython's source, first on PATH) is a final release, so the guard passes and the deadsnakes branch does not run (the PPA is unreachable here)"
    SKIPPED+=("$label: its deadsnakes-PPA branch (ppa.launchpadcontent.net unreachable here); CPython $PY311_VERSION built from source was installed before, so the command's guard passed")
  fi
  if [[ "$cmd" == *systemctl* ]]; then
    note="systemd: no systemd in a chroot; 'systemctl' is a shim (/usr/local/sbin/systemctl, first in sudo's secure_path) that records its calls"
    SKIPPED+=("$label: systemctl daemon-reload/enable/restart (no systemd in a chroot): a shim recorded the calls; the unit file was checked and its ExecStart run on 127.0.0.1 instead")
    printf '#!/bin/sh\necho "systemctl $*" >> /var/log/systemctl-shim.log\nexit 0\n' > "$ROOT/usr/local/sbin/systemctl"
    chmod 755 "$ROOT/usr/local/sbin/systemctl"; : > "$ROOT/var/log/systemctl-shim.log"
    SYSTEMD_LABEL=$label
  fi
  [ -n "$note" ] && say "   NOTE $note"
  step "$label" as_ubuntu_like_ray "$cmd"; rc=$?
  rm -f "$ROOT/usr/local/sbin/systemctl"
  if [ "$rc" = 0 ]; then OUTCOMES+=("$label: exit 0${note:+ (${note%%:*} adapted, see above)}")
  else OUTCOMES+=("$label: FAILED, exit $rc"); FAILED_SETUP=${FAILED_SETUP:-$label}; fi
done

# ================================================================ 3. the MLflow unit
say ""
say "== The MLflow systemd unit"
UNIT=$ROOT/etc/systemd/system/autowu-mlflow.service
MLFLOW_OK=no
if [ -n "$SYSTEMD_LABEL" ] && [ -s "$UNIT" ]; then
  say "systemctl calls recorded by the shim: $(paste -sd';' "$ROOT/var/log/systemctl-shim.log")"
  sed 's/^/   | /' "$UNIT" | tee -a "$REPORT"
  cp "$UNIT" "$ROOT/tmp/autowu-mlflow.service"
  check_unit() {
    as_ubuntu '~/autowu-venv/bin/python - /tmp/autowu-mlflow.service' <<'EOF'
import configparser, json, shlex, sys
cp = configparser.ConfigParser(strict=True, interpolation=None)
cp.optionxform = str
cp.read(sys.argv[1])
assert cp.sections() == ["Unit", "Service", "Install"], cp.sections()
svc = cp["Service"]
argv = shlex.split(svc["ExecStart"])
assert argv[0] == "/home/ubuntu/autowu-venv/bin/mlflow" and argv[1] == "server", argv[:2]
opts = dict(zip(argv[2::2], argv[3::2]))
assert opts["--backend-store-uri"].startswith("sqlite:////mnt/shared/"), opts
assert opts["--artifacts-destination"].startswith("/mnt/shared/"), opts
assert svc["User"] == "ubuntu", svc["User"]
assert cp["Unit"]["RequiresMountsFor"] == "/mnt/shared"
env = dict(e.split("=", 1) for e in shlex.split(svc.get("Environment", "")))
print("unit parses: User=%s, host %s, port %s, store %s, artifacts %s, env %s" % (
    svc["User"], opts["--host"], opts["--port"], opts["--backend-store-uri"], opts["--artifacts-destination"], env))
json.dump({"argv": argv, "env": env}, open("/tmp/mlflow-exec.json", "w"))
EOF
  }
  step "the unit file parses; ExecStart is ~/autowu-venv/bin/mlflow server with its store on /mnt/shared" check_unit \
    && say "   ${LAST_OUT_FILE_CONTENT}"
  PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  run_mlflow() {
    as_ubuntu "cd ~ && PORT=$PORT ~/autowu-venv/bin/python - <<'EOF'
import json, os, signal, subprocess, time, urllib.request
x = json.load(open('/tmp/mlflow-exec.json'))
argv = list(x['argv'])
argv[argv.index('--host') + 1] = '127.0.0.1'            # not the head's private IP
argv[argv.index('--port') + 1] = os.environ['PORT']     # a free port on this host
print('running:', ' '.join(argv))
p = subprocess.Popen(argv, env={**os.environ, **x['env']}, stdout=open('/tmp/mlflow.log', 'w'),
                     stderr=subprocess.STDOUT, start_new_session=True)
ok, t0 = False, time.time()
try:
    while time.time() - t0 < 120 and p.poll() is None:
        try:
            for path in ('/health', '/'):
                with urllib.request.urlopen('http://127.0.0.1:%s%s' % (os.environ['PORT'], path), timeout=5) as r:
                    body = r.read(200)
                    print('GET %s -> %s %r' % (path, r.status, body[:40]))
            ok = True
            break
        except OSError:
            time.sleep(1)
    print('answered after %.1fs' % (time.time() - t0) if ok else 'no answer; exit code %s' % p.poll())
finally:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
if not ok:
    print(open('/tmp/mlflow.log').read()[-3000:])
raise SystemExit(0 if ok else 1)
EOF
curl -sS -o /dev/null -w '' http://127.0.0.1:$PORT/ 2>/dev/null && echo 'still answering after stop?!' || echo 'stopped'
ls -la /mnt/shared/autowu-bench/mlflow/"
  }
  step "ExecStart's mlflow server on 127.0.0.1:$PORT, /health and / answer, then stopped" run_mlflow && MLFLOW_OK=yes
  say "$(echo "$LAST_OUT_FILE_CONTENT" | sed 's/^/   /')"
else
  say "no unit file written (the command failed or did not run)"
fi

# ================================================================ 4. the environment the setup left
say ""
say "== The venv the setup left"
VENV_OK=no
if in_root test -x /home/ubuntu/autowu-venv/bin/python; then   # its python links into the chroot
  VENV_OK=yes
  imports() {
    as_ubuntu '~/autowu-venv/bin/python - <<'"'EOF'"'
import sys, platform, importlib.metadata as md
import torch, torchvision, ray, mlflow, gpytorch, adamp, pyarrow, autowu_bench
print("python", sys.version.split()[0], "(%s)" % sys.version.replace("\n", " "), "glibc", platform.libc_ver()[1])
for mod, dist in [(torch, "torch"), (torchvision, "torchvision"), (ray, "ray"), (mlflow, "mlflow"), (gpytorch, "gpytorch"),
                  (adamp, "adamp"), (pyarrow, "pyarrow"), (autowu_bench, "autowu-bench")]:
    print("%-13s %-14s %s" % (dist, md.version(dist), getattr(mod, "__version__", "")))
print("torch CUDA build:", torch.version.cuda, "| cuda available here:", torch.cuda.is_available())
EOF'
  }
  step "import torch, torchvision, ray, mlflow, gpytorch, adamp, pyarrow, autowu_bench" imports
  IMPORT_RC=$?
  say "$(echo "$LAST_OUT_FILE_CONTENT" | sed 's/^/   /')"
  VENV_PY=$(echo "$LAST_OUT_FILE_CONTENT" | awk '/^python /{print $2; exit}')

  step "pip check" as_ubuntu '~/autowu-venv/bin/pip check'
  say "$(echo "$LAST_OUT_FILE_CONTENT" | sed 's/^/   /')"

  compare_pins() {
    as_ubuntu '~/autowu-venv/bin/pip list --format=json > /tmp/pip-list.json && ~/autowu-venv/bin/pip freeze --all > /tmp/pip-freeze.txt &&
~/autowu-venv/bin/python - ~/autowu-bench/constraints.txt /tmp/pip-list.json <<'"'EOF'"'
import json, re, sys
from packaging.utils import canonicalize_name as cn
pins = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9._-]+)\s*==\s*([^\s;]+)", line)
    assert m, "not an exact pin: %r" % line
    pins[cn(m[1])] = m[2]
inst = {cn(d["name"]): d["version"] for d in json.load(open(sys.argv[2]))}
at, off, unpinned = [], [], []
for name, v in sorted(inst.items()):
    if name in pins:
        (at if v == pins[name] else off).append((name, v, pins[name]))
    else:
        unpinned.append((name, v))
missing = sorted(set(pins) - set(inst))
print("installed: %d distributions; constraints.txt pins %d" % (len(inst), len(pins)))
print("at their pin: %d" % len(at))
print("NOT at their pin: %d%s" % (len(off), "".join("\n  %s %s (pin %s)" % t for t in off)))
print("installed, not pinned by constraints.txt: %d%s" % (len(unpinned), "".join("\n  %s %s" % t for t in unpinned)))
print("pinned, not installed here: %d  %s" % (len(missing), " ".join(missing)))
sys.exit(1 if off else 0)
EOF'
  }
  step "pip freeze against constraints.txt (every installed package that constraints.txt pins is at its pin)" compare_pins
  PIN_RESULT=$?
  say "$(echo "$LAST_OUT_FILE_CONTENT" | sed 's/^/   /')"

  # ---------------------------------------------------------------- 5. tests
  say ""
  say "== Tests in the chroot"
  step "the test extra: pip install -c constraints.txt -e ~/autowu-bench[test]" \
    as_ubuntu '~/autowu-venv/bin/pip install -q -c ~/autowu-bench/constraints.txt -e ~/autowu-bench"[test]" &&
      ~/autowu-venv/bin/pip list 2>/dev/null | grep -i -E "^(pytest|pytest-timeout|hypothesis) "'
  say "$(echo "$LAST_OUT_FILE_CONTENT" | sed 's/^/   /')"
  step "pytest -q tests/test_trial_driver.py tests/test_suites.py -m 'not slow'" \
    as_ubuntu 'cd ~/autowu-bench && ~/autowu-venv/bin/python -m pytest -q -p no:cacheprovider tests/test_trial_driver.py tests/test_suites.py -m "not slow"'
  TEST_RC=$?
  say "$(echo "$LAST_OUT_FILE_CONTENT" | tail -n 12 | sed 's/^/   /')"
else
  say "no ~/autowu-venv/bin/python: nothing to check"
fi

# ================================================================ 6. summary
say ""
say "== Summary"
say "date:            $(date -u '+%Y-%m-%d %H:%M:%S UTC') (took $(( $(date +%s) - START_EPOCH ))s)"
say "chroot:          $OS_RELEASE, glibc $GLIBC"
say "Python:          python3.11 $PY311_VERSION built from CPython's source (a real node gets deadsnakes' 3.11 build); venv Python ${VENV_PY:-?}"
say "setup commands:"
for o in "${OUTCOMES[@]}"; do say "  $o"; done
say "skipped or adapted, and why:"
for s in "${SKIPPED[@]}"; do say "  - $s"; done
say "  - head_start_ray_commands / worker_start_ray_commands (ray stop, ray start): not run"
say "MLflow unit:     server from its ExecStart answered on 127.0.0.1: $MLFLOW_OK"
[ "$VENV_OK" = yes ] && say "pins:            $([ "${PIN_RESULT:-1}" = 0 ] && echo 'every installed package that constraints.txt pins is at its pin' || echo 'MISMATCH, see above')"
[ "$VENV_OK" = yes ] && say "imports:         exit ${IMPORT_RC:-?}"
[ "$VENV_OK" = yes ] && say "tests:           exit ${TEST_RC:-?}"
say "steps (exit, seconds, what):"
for l in "${STEP_LINES[@]}"; do say "  $l"; done

mkdir -p "$(dirname "$RESULT")" && cp "$REPORT" "$RESULT" && echo "report written to $RESULT"
[ -z "$FAILED_SETUP" ] && [ "$MLFLOW_OK" = yes ] && [ "${IMPORT_RC:-1}" = 0 ] && [ "${PIN_RESULT:-1}" = 0 ] &&
  [ "${TEST_RC:-1}" = 0 ]
