# lib.sh -- helpers for the D-Bus tests (org.cmpgw.Gateway1, cmpgwctl).
# Sources tests/integration/lib.sh and adds a private system-like bus:
#
#   start_bus        dbus-daemon with a generated config that includes our
#                    policy file dbus/org.cmpgw.Gateway1.conf, on a unix
#                    socket in $T/bus; exports DBUS_SYSTEM_BUS_ADDRESS.
#                    Group "cmpgw" of the policy is replaced by $TEST_GROUP
#                    (default "users"), so that an unprivileged member of the
#                    group can be tried without changing the system.
#   write_dbus_config FILE   like write_config, with "dbus": {"bus": "system"}
#   start_gw_dbus FILE       start_gw, then wait until the name is owned
#   ctl NAME ARGS...         run cmpgwctl ARGS: stdout $T/NAME.out, stderr
#                            $T/NAME.err, exit status in CTL_RC
#   ctl_as_nobody NAME [--groups G] ARGS...   the same as user nobody
#
# Environment (tests/dbus/meson.build): CMPGWD CMPCOAP CMPGWCTL SRCDIR.
#
# shellcheck shell=bash
# shellcheck disable=SC2034

source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

: "${CMPGWCTL:=$SRCDIR/build/cli/cmpgwctl}"
TEST_GROUP=${TEST_GROUP:-users}
BUS_PID=''
GW_NAME=org.cmpgw.Gateway1
GW_OBJ=/org/cmpgw/Gateway1

require_ctl() { [[ -x $CMPGWCTL ]] || skip "no cmpgwctl binary at $CMPGWCTL"; }

start_bus() {
        require_cmd dbus-daemon
        # nobody must reach the socket (and read the policy copy)
        chmod 0711 "$T"
        mkdir -p "$T/bus"
        chmod 0755 "$T/bus"
        sed "s/group=\"cmpgw\"/group=\"$TEST_GROUP\"/" "$SRCDIR/dbus/org.cmpgw.Gateway1.conf" \
                >"$T/bus/org.cmpgw.Gateway1.conf"
        grep -q "group=\"$TEST_GROUP\"" "$T/bus/org.cmpgw.Gateway1.conf" ||
                fail "the policy file has no group=\"cmpgw\" section"
        cat >"$T/bus/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$T/bus/socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>$T/bus/org.cmpgw.Gateway1.conf</include>
</busconfig>
EOF
        dbus-daemon --config-file="$T/bus/bus.conf" --nofork --nopidfile >"$T/bus.log" 2>&1 &
        BUS_PID=$!
        PIDS+=("$BUS_PID")
        local i
        for ((i = 0; i < 100; i++)); do
                [[ -S $T/bus/socket ]] && break
                kill -0 "$BUS_PID" 2>/dev/null || { cat "$T/bus.log" >&2; fail "dbus-daemon exited"; }
                sleep 0.05
        done
        [[ -S $T/bus/socket ]] || fail "dbus-daemon did not create $T/bus/socket"
        chmod 0777 "$T/bus/socket"
        export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/bus/socket
        # never the real session bus
        export DBUS_SESSION_BUS_ADDRESS=unix:path=$T/bus/no-session-bus
}

write_dbus_config() {
        write_config "$1"
        sed -i 's/"dbus": *{ *"bus": *"none" *}/"dbus":      { "bus": "system" }/' "$1"
        grep -q '"bus": "system"' "$1" || fail "write_dbus_config: cannot set dbus.bus in $1"
}

name_has_owner() {
        busctl --system status "$GW_NAME" >/dev/null 2>&1
}

# start_gw_dbus CONFIG: start cmpgwd and wait for it to own the name.
start_gw_dbus() {
        start_gw "$1"
        local i
        for ((i = 0; i < 100; i++)); do
                name_has_owner && return 0
                sleep 0.05
        done
        tail -n 20 "$T/gw.log" >&2
        fail "cmpgwd did not take the name $GW_NAME on the test bus"
}

ctl() {
        local name=$1
        shift
        CTL_RC=0
        timeout 30 "$CMPGWCTL" "$@" >"$T/$name.out" 2>"$T/$name.err" || CTL_RC=$?
        log "cmpgwctl $* -> exit $CTL_RC $(head -c 200 "$T/$name.err" | tr "\n" " ")"
}

ctl_as_nobody() {
        local name=$1 groups=(--clear-groups)
        shift
        if [[ ${1:-} == --groups ]]; then
                groups=(--groups "$(getent group "$2" | cut -d: -f3)")
                shift 2
        fi
        # a copy nobody can reach whatever the permissions of the build tree
        if [[ ! -x $T/nobody/cmpgwctl ]]; then
                chmod 0711 "$T"
                install -d -m 0755 "$T/nobody"
                install -m 0755 "$CMPGWCTL" "$T/nobody/cmpgwctl"
        fi
        CTL_RC=0
        timeout 30 setpriv --reuid=nobody --regid=nogroup "${groups[@]}" \
                "$T/nobody/cmpgwctl" "$@" >"$T/$name.out" 2>"$T/$name.err" || CTL_RC=$?
        log "(as nobody) cmpgwctl $* -> exit $CTL_RC $(head -c 200 "$T/$name.err" | tr '\n' ' ')"
}

# expect_rc WHAT WANT: check CTL_RC
expect_rc() {
        ((CTL_RC == $2)) || {
                cat "$T/$1.err" >&2
                fail "$1: cmpgwctl exited $CTL_RC, expected $2"
        }
}

# json_get FILE PYEXPR: evaluate PYEXPR with j = the parsed JSON of FILE
json_get() {
        python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v if not isinstance(v, (dict, list, bool)) else json.dumps(v))' "$1" "$2"
}

# json_check WHAT FILE PYCODE [ARGS...]: run PYCODE with j = the parsed JSON
# of FILE and a = ARGS; an AssertionError (or any exception) fails the test
# with its message.
json_check() {
        local what=$1 file=$2 code=$3
        shift 3
        python3 - "$file" "$code" "$@" <<'PY' || { log "$what: $(head -c 2000 "$file")"; fail "$what"; }
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("not JSON: %s" % e, file=sys.stderr); sys.exit(1)
a = sys.argv[3:]
try:
    exec(sys.argv[2])
except AssertionError as e:
    print("assertion: %s" % e, file=sys.stderr); sys.exit(1)
PY
}

# start_monitor: cmpgwctl --json monitor in the background, signals to
# $T/monitor.json; returns once it is subscribed.
start_monitor() {
        "$CMPGWCTL" --json monitor >"$T/monitor.json" 2>"$T/monitor.err" &
        MON_PID=$!
        PIDS+=("$MON_PID")
        local i
        for ((i = 0; i < 100; i++)); do
                grep -q '^Monitoring' "$T/monitor.err" && return 0
                kill -0 "$MON_PID" 2>/dev/null || { cat "$T/monitor.err" >&2; fail "cmpgwctl monitor exited"; }
                sleep 0.05
        done
        fail "cmpgwctl monitor did not subscribe within 5 s: $(cat "$T/monitor.err")"
}

# wait_signal NAME N: until the monitor printed N signals NAME (10 s); the
# Nth one is left in $T/signal.json
wait_signal() {
        local name=$1 n=$2 i
        for ((i = 0; i < 200; i++)); do
                if (($(grep -c "\"signal\":\"$name\"" "$T/monitor.json" || true) >= n)); then
                        grep "\"signal\":\"$name\"" "$T/monitor.json" | sed -n "${n}p" >"$T/signal.json"
                        return 0
                fi
                sleep 0.05
        done
        log "monitor output:"; cat "$T/monitor.json" >&2
        fail "no signal $name (#$n) within 10 s"
}

cert_serial() {
        openssl x509 -in "$1" -noout -serial | sed 's/^serial=//' | tr 'a-f' 'A-F'
}
