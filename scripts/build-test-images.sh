#!/usr/bin/env bash
# Builds the images the tests and the README use, without any registry: a rootfs made
# from Debian's own binaries, imported with `docker import`.
#
#   mesos-stateful/redis:test    redis-server and redis-cli with their libraries, busybox
#   mesos-stateful/busybox:test  busybox only
#
# Needs: docker, redis-server (for its binaries) and busybox-static installed.
set -euo pipefail

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

copy_with_libraries() {
    local root=$1 binary=$2
    install -D -m 0755 "$binary" "$root$binary"
    # Every shared library the binary loads, and the dynamic loader itself.
    ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
        install -D -m 0755 "$lib" "$root$lib"
        # Keep the path the binary asks for when it goes through a symlink.
        local real
        real=$(readlink -f "$lib")
        [ "$real" = "$lib" ] || install -D -m 0755 "$real" "$root$real"
    done
}

base_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,etc,tmp,data}
    chmod 0755 "$root"
    chmod 1777 "$root/tmp"
    install -m 0755 /bin/busybox "$root/bin/busybox"
    for applet in sh ls cat echo sleep env ps kill true false; do
        ln -sf busybox "$root/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
    echo 'root:x:0:' > "$root/etc/group"
}

# busybox
root="$work/busybox"
base_rootfs "$root"
tar -C "$root" -c . | docker import \
    --change 'CMD ["/bin/sh"]' \
    - mesos-stateful/busybox:test >/dev/null

# redis
root="$work/redis"
base_rootfs "$root"
copy_with_libraries "$root" "$(readlink -f /usr/bin/redis-server)"
ln -sf "$(readlink -f /usr/bin/redis-server)" "$root/usr/bin/redis-server" 2>/dev/null || true
copy_with_libraries "$root" /usr/bin/redis-cli
tar -C "$root" -c . | docker import \
    --change 'WORKDIR /data' \
    --change 'ENV PATH=/usr/bin:/bin' \
    --change 'CMD ["redis-server"]' \
    - mesos-stateful/redis:test >/dev/null

docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^mesos-stateful/'
