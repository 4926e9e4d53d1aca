#!/bin/busybox sh
# /init of the initramfs a zgrid node boots VMs with (built by initramfs.rs). It loads the
# kernel modules listed in /lib/modules/load (in order), mounts the VM's root (the virtiofs
# share tagged `root`), applies the guest configuration the node passes as qemu fw_cfg entries
# (opt/zgrid/<key>), and hands over to the image's /sbin/init. Whatever fails is said on the
# console as a `zgrid: ` line, then the VM powers off so the node reports the console's tail.

/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "zgrid: $*"
    sync
    poweroff -f
    sleep 5
}

mount -t devtmpfs dev /dev || fail "cannot mount devtmpfs: the kernel needs CONFIG_DEVTMPFS"
mount -t proc proc /proc
mount -t sysfs sys /sys

while read -r module; do
    case "$module" in ""|"#"*) continue ;; esac
    insmod "/lib/modules/$module" \
        || fail "cannot load kernel module $module: the modules do not match the kernel; rebuild the kernel bundle (scripts/vm-kernel)"
done < /lib/modules/load

config=/sys/firmware/qemu_fw_cfg/by_name/opt/zgrid
# The value of one configuration key, empty when the node did not set it.
cfg() {
    [ -f "$config/$1/raw" ] && cat "$config/$1/raw"
}

mkdir -p /newroot
tries=0
until mount -t virtiofs root /newroot 2>/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 20 ] \
        || fail "cannot mount the VM's root (virtiofs tag 'root'): qemu needs -device vhost-user-fs-pci,tag=root with virtiofsd running"
    sleep 0.1
done

# /sbin/init of the image, its symbolic links followed inside the image.
path=/sbin/init
hops=0
while [ -L "/newroot$path" ] && [ "$hops" -lt 20 ]; do
    target=$(readlink "/newroot$path")
    case "$target" in
        /*) path="$target" ;;
        *) path="$(dirname "$path")/$target" ;;
    esac
    hops=$((hops + 1))
done
[ -f "/newroot$path" ] && [ -x "/newroot$path" ] \
    || fail "the image has no executable /sbin/init: build the VM image with an init system (scripts/vm-image installs systemd-sysv)"

hostname=$(cfg hostname)
if [ -n "$hostname" ]; then
    hostname "$hostname"
    echo "$hostname" > /newroot/etc/hostname || fail "cannot write /etc/hostname in the VM's root: is its disk full?"
    grep -q "[[:space:]]$hostname\$" /newroot/etc/hosts 2>/dev/null \
        || echo "127.0.1.1 $hostname" >> /newroot/etc/hosts
fi

keys=$(cfg authorized_keys)
if [ -n "$keys" ]; then
    mkdir -p /newroot/root/.ssh && chmod 700 /newroot/root/.ssh \
        && echo "$keys" > /newroot/root/.ssh/authorized_keys && chmod 600 /newroot/root/.ssh/authorized_keys \
        || fail "cannot write /root/.ssh/authorized_keys in the VM's root: is its disk full?"
fi

if [ -f "$config/environment/raw" ]; then
    (umask 077 && cat "$config/environment/raw" > /newroot/etc/environment) \
        || fail "cannot write /etc/environment in the VM's root: is its disk full?"
fi

dns=$(cfg dns)
if [ -n "$dns" ]; then
    # Replace a link (to systemd-resolved's file, say) rather than write through it.
    rm -f /newroot/etc/resolv.conf
    echo "$dns" > /newroot/etc/resolv.conf || fail "cannot write /etc/resolv.conf in the VM's root"
fi

# Every VM gets its own SSH host key: an image must not carry one that all its VMs share.
if [ -x /newroot/usr/bin/ssh-keygen ] && ! ls /newroot/etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    mkdir -p /newroot/etc/ssh
    chroot /newroot /usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key \
        || fail "cannot generate the VM's SSH host key (ssh-keygen in the image failed)"
fi

address=$(cfg address)
if [ -n "$address" ]; then
    ip link set lo up
    ip link set eth0 up || fail "the VM has no eth0: qemu needs a virtio-net device"
    ip addr add "$address" dev eth0 || fail "cannot set address $address on eth0"
    gateway=$(cfg gateway)
    if [ -n "$gateway" ]; then
        ip route add default via "$gateway" || fail "cannot route through gateway $gateway"
    fi
fi

if [ -f "$config/volumes/raw" ]; then
    while read -r tag mountpoint; do
        [ -n "$tag" ] || continue
        mkdir -p "/newroot$mountpoint" && mount -t virtiofs "$tag" "/newroot$mountpoint" \
            || fail "cannot mount volume $tag at $mountpoint"
    done < "$config/volumes/raw"
fi

for fs in dev proc sys; do
    mkdir -p "/newroot/$fs" && mount --move "/$fs" "/newroot/$fs" || umount -l "/$fs"
done
echo "zgrid: starting /sbin/init"
exec switch_root /newroot /sbin/init "$@"
