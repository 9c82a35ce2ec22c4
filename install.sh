#!/usr/bin/env bash
# Install, upgrade or remove ductor. Idempotent: run it again to upgrade.
#
#   ./install.sh [--user]         user mode: ~/.local/share/ductor, ~/.local/bin, user units
#   ./install.sh --system         system mode: /opt/ductor, /usr/local/bin, account 'ductor'
#   ./install.sh --dev            also install the test and lint tools into the venv
#   ./install.sh --init [ARGS]    then create an agent (`ductor init ARGS`, e.g. --init main
#                                 --user-id 1) and start it when a service manager runs
#   ./install.sh --no-hardening   install the units without their sandbox drop-ins
#   ./install.sh --force          replace another program called ductor in the bin directory
#   ./install.sh --uninstall      remove programs, units and caches, keep config and data
#   ./install.sh --purge          remove everything ductor made, config and data included
#   ./install.sh --render-units DIR   only write the units as they would be installed
#
# Offline installs: point pip at a directory of wheels with PIP_NO_INDEX=1 and
# PIP_FIND_LINKS=DIR; pip reads both from the environment.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# useradd, loginctl and friends live in sbin, which some root shells leave out of PATH.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
MODE=user
DEV=0
ACTION=install
HARDENING=auto
RENDER_DIR=
INIT_ARGS=()
RUN_INIT=0
FORCE=0

say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --system) MODE=system ;;
        --user) MODE=user ;;
        --dev) DEV=1 ;;
        --uninstall) ACTION=uninstall ;;
        --purge) ACTION=purge ;;
        --no-hardening) HARDENING=no ;;
        --force) FORCE=1 ;;
        --render-units)
            [ $# -ge 2 ] || die "--render-units needs a directory"
            ACTION=render; RENDER_DIR=$2; shift ;;
        --init) RUN_INIT=1; shift; INIT_ARGS=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

if [ "$MODE" = system ]; then
    [ "$ACTION" = render ] || [ "$(id -u)" -eq 0 ] || die "--system needs root (run it with sudo)"
    DATA_DIR=/opt/ductor
    BIN_DIR=${DUCTOR_BIN_DIR:-/usr/local/bin}
    UNIT_DIR=/etc/systemd/system
    CONF_DIR=/etc/ductor
    SCOPE=(--system)
else
    [ -n "${HOME:-}" ] || die "HOME is not set"
    DATA_DIR=${XDG_DATA_HOME:-$HOME/.local/share}/ductor
    BIN_DIR=${DUCTOR_BIN_DIR:-$HOME/.local/bin}
    UNIT_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
    CONF_DIR=${XDG_CONFIG_HOME:-$HOME/.config}/ductor
    SCOPE=(--user)
fi
VENV=$DATA_DIR/venv
DOC_DIR=$DATA_DIR/doc
MANIFEST=$DATA_DIR/installed-files
# Kept with the configuration (which --uninstall keeps too): lingering was off before.
LINGER_MARK=$CONF_DIR/.lingering-enabled-by-install.sh
ACCOUNT=ductor

# --- units ------------------------------------------------------------------------------

unit_sources() {
    find "$SRC/systemd" -maxdepth 1 -type f \
        \( -name '*.service' -o -name '*.socket' -o -name '*.timer' -o -name '*.path' \
           -o -name '*.target' \) | sort
}

# render SRC_FILE DEST_FILE: fill in the install locations and say who wrote it.
render() {
    local dest_dir
    dest_dir=$(dirname "$2")
    mkdir -p "$dest_dir"
    {
        printf '# Installed by ductor install.sh (%s mode); local changes belong in a drop-in:\n' "$MODE"
        printf '# systemctl %s edit %s\n' "${SCOPE[0]}" "$(basename "$2")"
        # Templates name the system-mode locations; other installs get theirs.
        sed -e "s|/usr/local/bin/ductor|$BIN_DIR/ductor|g" \
            -e "s|file:///opt/ductor/doc/|file://$DOC_DIR/|g" "$1"
    } > "$2.tmp"
    chmod 0644 "$2.tmp"
    mv -f "$2.tmp" "$2"
}

hardening_supported() {
    case "$HARDENING" in no) return 1 ;; esac
    [ "$ACTION" = render ] && return 0
    if [ "$MODE" = user ]; then
        timeout 30 systemd-run --user --wait --quiet --collect -p PrivateUsers=yes true \
            >/dev/null 2>&1
    else
        timeout 30 systemd-run --wait --quiet --collect -p PrivateUsers=yes true \
            >/dev/null 2>&1
    fi
}

# install_units DIR: templates, hardening drop-ins (where they work), system drop-ins.
install_units() {
    local dir=$1 unit name conf hardened=0
    mkdir -p "$dir"
    if hardening_supported; then hardened=1; fi
    while IFS= read -r unit; do
        name=$(basename "$unit")
        render "$unit" "$dir/$name"
        echo "$dir/$name" >> "$MANIFEST.new"
        conf=$SRC/systemd/hardening/$name.conf
        if [ -f "$conf" ]; then
            if [ "$hardened" -eq 1 ]; then
                render "$conf" "$dir/$name.d/50-hardening.conf"
                echo "$dir/$name.d/50-hardening.conf" >> "$MANIFEST.new"
            else
                rm -f "$dir/$name.d/50-hardening.conf"
            fi
        fi
        conf=$SRC/systemd/system/$name.conf
        if [ "$MODE" = system ] && [ -f "$conf" ]; then
            render "$conf" "$dir/$name.d/20-system.conf"
            echo "$dir/$name.d/20-system.conf" >> "$MANIFEST.new"
        fi
    done < <(unit_sources)
    if [ "$hardened" -eq 0 ]; then
        warn "user namespaces are not available here (PrivateUsers=yes fails):"
        warn "installing the units without their sandbox drop-ins."
    fi
}

if [ "$ACTION" = render ]; then
    MANIFEST=$(mktemp)
    install_units "$RENDER_DIR"
    rm -f "$MANIFEST" "$MANIFEST.new"
    exit 0
fi

# --- operating system packages ----------------------------------------------------------

pick_python() {
    local candidate
    for candidate in "${DUCTOR_PYTHON:-}" /usr/bin/python3 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
            >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_os_packages() {
    local missing=()
    pick_python >/dev/null || missing+=(python3 python3-venv)
    command -v systemctl >/dev/null 2>&1 || missing+=(systemd)
    command -v journalctl >/dev/null 2>&1 || missing+=(systemd)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "Installing OS packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        die "missing OS packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}"
    fi
}

# --- the pieces -------------------------------------------------------------------------

install_venv() {
    local python
    python=$(pick_python) || die "no Python >= 3.11 with venv found (apt-get install python3-venv)"
    if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$VENV"   # its interpreter went away (Python upgraded): start over
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "Creating $VENV"
        mkdir -p "$DATA_DIR"
        "$python" -m venv "$VENV"
    fi
    local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check --quiet)
    say "Installing dependencies (pinned in requirements/*.lock)"
    "${pip[@]}" -c "$SRC/requirements/runtime.lock" -r "$SRC/requirements/runtime.txt"
    if [ "$DEV" -eq 1 ]; then
        "${pip[@]}" -c "$SRC/requirements/dev.lock" -c "$SRC/requirements/runtime.lock" \
            -r "$SRC/requirements/dev.txt"
    fi
    local site build
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # Releases before this one copied the package in without pip's record of it.
    if [ -d "$site/ductor" ] && ! compgen -G "$site/ductor-*.dist-info" >/dev/null; then
        rm -rf "$site/ductor"
    fi
    # ductor itself, built by pip from pyproject.toml. pip builds inside the source tree,
    # so it gets a copy: the checkout stays clean (and may be read-only).
    say "Installing ductor from $SRC"
    build=$(mktemp -d)
    cp -R "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/lib" "$build/"
    find "$build" -name '__pycache__' -type d -prune -exec rm -rf {} +
    "${pip[@]}" --no-deps --force-reinstall "$build" || { rm -rf "$build"; die "pip could not install ductor"; }
    rm -rf "$build"
}

# Is FILE a program this script wrote? Ours start with the venv's interpreter (being in
# the manifest is not enough: something else may have replaced it since).
ours() {
    [ -f "$1" ] && [ ! -L "$1" ] \
        && [ "$(head -c 200 "$1" 2>/dev/null | head -n 1)" = "#!$VENV/bin/python" ]
}

# Another program by one of our names (the original ductor from pipx, say) is not
# replaced without --force: the user would lose it without a word.
check_foreign_programs() {
    local program file foreign=()
    for program in "$SRC"/bin/*; do
        file=$BIN_DIR/$(basename "$program")
        if [ -e "$file" ] || [ -L "$file" ]; then
            ours "$file" || foreign+=("$file")
        fi
    done
    [ ${#foreign[@]} -eq 0 ] && return 0
    if [ "$FORCE" -eq 1 ]; then
        warn "replacing ${foreign[*]} (another program; --force)"
        return 0
    fi
    warn "${foreign[*]}: another program by that name is installed there"
    warn "(e.g. the original ductor from pipx: 'pipx uninstall ductor' removes it)."
    die "remove it, or run install.sh again with --force to replace it"
}

install_programs() {
    local program name
    mkdir -p "$BIN_DIR"
    for program in "$SRC"/bin/*; do
        name=$(basename "$program")
        {
            printf '#!%s\n' "$VENV/bin/python"
            tail -n +2 "$program"
        } > "$BIN_DIR/$name.tmp"
        chmod 0755 "$BIN_DIR/$name.tmp"
        mv -f "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
        echo "$BIN_DIR/$name" >> "$MANIFEST.new"
    done
    mkdir -p "$DOC_DIR"
    cp -R "$SRC/README.md" "$SRC/docs" "$SRC/etc" "$DOC_DIR/"
}

install_config() {
    if [ "$MODE" = user ]; then
        # The units keep it 0700 too (ConfigurationDirectoryMode=): other users of the
        # machine have no business reading the agents' config.
        install -d -m 0700 "$CONF_DIR"
        chmod 0700 "$CONF_DIR"
    else
        install -d -m 0755 "$CONF_DIR"
        # The account's state: what root writes there (`ductor --system cron add`, init)
        # is given to the account, which owns the directory (lib/ductor/atomic.py).
        install -d -m 0700 -o "$ACCOUNT" -g "$ACCOUNT" /var/lib/ductor
        # Older releases left root's files there (cron jobs, task folders), which the
        # account's units cannot open: an upgrade gives them back.
        find /var/lib/ductor -xdev ! -user "$ACCOUNT" -exec chown -h "$ACCOUNT:$ACCOUNT" {} +
    fi
    mkdir -p "$CONF_DIR/agents"
    install -d -m 0700 "$CONF_DIR/credentials"
    if [ ! -e "$CONF_DIR/ductor.toml" ]; then
        install -m 0644 "$SRC/etc/ductor.toml" "$CONF_DIR/ductor.toml"
        say "Wrote the example configuration to $CONF_DIR/ductor.toml"
    fi
    # System mode: credentials stay root's; the manager hands them to the units with
    # LoadCredential= (the tokens, and the agent's .env as the credential 'dotenv'), so
    # the 'ductor' account never reads this directory itself.
}

ensure_account() {
    if ! getent passwd "$ACCOUNT" >/dev/null; then
        say "Creating the system account '$ACCOUNT'"
        useradd --system --user-group --home-dir /var/lib/ductor --no-create-home \
            --shell /usr/sbin/nologin --comment "ductor agents" "$ACCOUNT"
    fi
}

enable_linger() {
    local user
    user=$(id -un)
    if [ -e "/var/lib/systemd/linger/$user" ]; then
        return 0
    fi
    if loginctl enable-linger "$user" >/dev/null 2>&1; then
        touch "$LINGER_MARK"   # so that --purge turns it off again
        say "Enabled lingering for $user: agents keep running after you log out."
    else
        warn "could not enable lingering for $user: agents will stop when you log out."
        warn "fix it with: sudo loginctl enable-linger $user"
    fi
}

manager() { systemctl "${SCOPE[@]}" "$@"; }

reload_manager() {
    if manager daemon-reload >/dev/null 2>&1; then
        manager enable ductor.target >/dev/null 2>&1 || warn "could not enable ductor.target"
        # Running agents pick up new templates; their targets are re-derived from config.
        if [ -x "$BIN_DIR/ductor" ]; then
            "$BIN_DIR/ductor" "${SCOPE[@]}" agent sync >/dev/null 2>&1 || true
        fi
    else
        warn "the ${SCOPE[0]#--} service manager is not reachable; the units are installed"
        warn "but not loaded. Once it runs: systemctl ${SCOPE[0]} daemon-reload"
    fi
}

# Files a previous install wrote that this one did not: removed (renamed units etc.).
prune_stale() {
    [ -f "$MANIFEST" ] || return 0
    local file
    while IFS= read -r file; do
        grep -qxF "$file" "$MANIFEST.new" 2>/dev/null || rm -f "$file"
    done < "$MANIFEST"
}

# Where ductor keeps things, one "KIND PATH" line each (config, state, cache, runtime):
# what the library says (before the venv goes), and the documented defaults (after an
# --uninstall the venv is gone already; on systemd 254+ user state is in ~/.local/state).
ductor_dirs() {
    if [ -x "$VENV/bin/python" ]; then
        "$VENV/bin/python" - "$MODE" <<'PY' 2>/dev/null || true
import sys
from ductor.paths import Mode, resolve
p = resolve(Mode(sys.argv[1]))
for kind in ("config", "state", "cache", "runtime"):
    print(kind, getattr(p, f"{kind}_dir"))
PY
    fi
    if [ "$MODE" = system ]; then
        printf '%s\n' "config /etc/ductor" "state /var/lib/ductor" "cache /var/cache/ductor" \
            "runtime /run/ductor"
    else
        printf '%s\n' "config $CONF_DIR" "state ${XDG_STATE_HOME:-$HOME/.local/state}/ductor" \
            "cache ${XDG_CACHE_HOME:-$HOME/.cache}/ductor" \
            "runtime ${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/ductor"
    fi
}

# remove_dirs KIND...: delete ductor's directories of these kinds.
remove_dirs() {
    local kind dir
    while read -r kind dir; do
        case " $* " in *" $kind "*) ;; *) continue ;; esac
        case "$dir" in "" | / | "$HOME" | "$HOME/") continue ;; esac
        rm -rf "$dir"
    done < <(ductor_dirs | sort -u)
}

# Stop every unit of ductor's first, the .path units with the rest: deleting the config
# below must not trigger a reload that fails and leaves the manager "degraded".
stop_units() {
    command -v systemctl >/dev/null 2>&1 || return 0
    manager disable ductor.target >/dev/null 2>&1 || true
    manager stop 'ductor*.path' 'ductor*.timer' >/dev/null 2>&1 || true
    manager stop 'ductor*' >/dev/null 2>&1 || true
}

uninstall() {
    local file dir
    stop_units
    if [ -f "$MANIFEST" ]; then
        while IFS= read -r file; do
            rm -f "$file"
            rmdir "$(dirname "$file")" 2>/dev/null || true
        done < "$MANIFEST"
    fi
    find "$UNIT_DIR" -maxdepth 1 -type d -name 'ductor*.d' -exec rm -rf {} + 2>/dev/null || true
    # What `enable` linked: ductor.target, agent targets, cron and heartbeat timers. A link
    # left behind points at nothing and is listed "not-found".
    find "$UNIT_DIR" -mindepth 2 -maxdepth 2 \( -path '*.wants/ductor*' -o -path '*.requires/ductor*' \) \
        \( -type l -o -type f \) -delete 2>/dev/null || true
    find "$UNIT_DIR" -mindepth 1 -maxdepth 1 -type d -name 'ductor*.wants' -empty -delete 2>/dev/null || true
    if [ "$MODE" = user ]; then  # the user's unit directory: its empty .wants are ductor's
        find "$UNIT_DIR" -mindepth 1 -maxdepth 1 -type d -name '*.wants' -empty -delete 2>/dev/null || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
        manager daemon-reload >/dev/null 2>&1 || true
        manager reset-failed 'ductor*' >/dev/null 2>&1 || true
    fi
    # The sockets' directories (empty now) and the caches: nothing there is worth keeping.
    remove_dirs cache runtime
}

# The CLIs keep a transcript of every chat under their own directory, named after the
# working directory: a workspace or cron task folder under one of ductor's directories.
purge_transcripts() {
    local kind dir name file
    [ "$MODE" = user ] || return 0   # the account's home is /var/lib/ductor: gone already
    while read -r kind dir; do
        [ "$kind" = state ] || continue
        case "$dir" in "" | /) continue ;; esac
        # Claude Code: ~/.claude/projects/<the path with every other character a '-'>
        name=$(printf '%s' "$dir" | sed 's/[^A-Za-z0-9]/-/g')
        for file in "$HOME/.claude/projects/$name"-*; do
            [ -e "$file" ] && rm -rf "$file"
        done
        # Codex: one log per session, which names its working directory.
        if [ -d "$HOME/.codex/sessions" ]; then
            grep -rlF "\"cwd\":\"$dir/" "$HOME/.codex/sessions" 2>/dev/null | xargs -r rm -f
        fi
    done < <(ductor_dirs | sort -u)
    # Gemini: ~/.gemini/tmp/<sha256 of the project directory>
    if [ -d "$HOME/.gemini/tmp" ]; then
        while read -r kind dir; do
            [ "$kind" = state ] || continue
            for file in "$dir"/*/workspace; do
                [ -d "$file" ] || continue
                name=$(printf '%s' "$file" | sha256sum | cut -d' ' -f1)
                rm -rf "${HOME:?}/.gemini/tmp/$name"
            done
        done < <(ductor_dirs | sort -u)
    fi
}

purge_data() {
    purge_transcripts
    remove_dirs config state cache runtime
    rm -rf "$CONF_DIR"
    if [ "$MODE" = system ]; then
        rm -rf /var/lib/ductor /var/cache/ductor
        if getent passwd "$ACCOUNT" >/dev/null; then
            # Units of the account may still be on their way out (a transport retrying
            # its network, a CLI being stopped): userdel refuses while they run.
            for _ in $(seq 1 40); do
                pgrep -u "$ACCOUNT" >/dev/null 2>&1 || break
                sleep 0.5
            done
            pkill -KILL -u "$ACCOUNT" >/dev/null 2>&1 || true
            sleep 0.2
            userdel "$ACCOUNT" 2>/dev/null || warn "could not remove the account $ACCOUNT (userdel $ACCOUNT)"
        fi
    fi
}

# Lingering, if this script turned it on (it was off before): off again. Last, since the
# user's manager ends with it. $1: 1 if the mark said so (read before the config went).
purge_lingering() {
    local user
    [ "$MODE" = user ] || return 0
    user=$(id -un)
    [ -e "/var/lib/systemd/linger/$user" ] || return 0
    if [ "$1" -eq 1 ]; then
        if loginctl disable-linger "$user" >/dev/null 2>&1; then
            say "Turned lingering off for $user again (install.sh had turned it on)."
        else
            warn "could not turn lingering off: sudo loginctl disable-linger $user"
        fi
    else
        say "Left lingering on for $user: it was on before ductor (loginctl disable-linger $user)."
    fi
}

# --- main -------------------------------------------------------------------------------

case "$ACTION" in
    uninstall|purge)
        lingering_ours=0
        [ -e "$LINGER_MARK" ] && lingering_ours=1
        uninstall
        if [ "$ACTION" = purge ]; then
            purge_data
            rm -rf "$DATA_DIR"
            say "ductor removed: programs, units, caches, configuration, agent data and the"
            say "CLIs' transcripts of its chats."
            say "Left on purpose: the CLIs and their logins (~/.claude, ~/.codex, ~/.gemini),"
            say "the OS packages install.sh may have added (python3-venv, systemd)."
            purge_lingering "$lingering_ours"
        else
            rm -rf "$DATA_DIR"
            say "ductor removed: programs, units and caches."
            say "Kept your configuration ($CONF_DIR), the agents' data and lingering;"
            say "--purge removes them."
        fi
        exit 0
        ;;
esac

check_foreign_programs
ensure_os_packages
rm -f "$MANIFEST.new"
mkdir -p "$DATA_DIR"
[ "$MODE" = system ] && ensure_account
install_venv
install_programs
install_units "$UNIT_DIR"
install_config
prune_stale
mv -f "$MANIFEST.new" "$MANIFEST"
[ "$MODE" = user ] && enable_linger
reload_manager

say ""
say "ductor is installed ($MODE mode): programs in $BIN_DIR, units in $UNIT_DIR."
if [ "$MODE" = user ]; then
    case ":$PATH:" in
        *":$BIN_DIR:"*) ;;
        *) say "Add $BIN_DIR to your PATH (e.g. in ~/.profile) to run 'ductor' directly." ;;
    esac
fi
if [ "$RUN_INIT" -eq 1 ]; then
    # --start: turned on at once where a service manager runs; it says how to talk to
    # the bot and how to watch its logs.
    exec "$BIN_DIR/ductor" "${SCOPE[@]}" init --start "${INIT_ARGS[@]}"
fi
say "Next: create your first agent with"
say "  $BIN_DIR/ductor ${SCOPE[*]} init"
