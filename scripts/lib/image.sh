# Shared by the image scripts (vm-image, k8s-image, registry-image): sourced, not run.
#
#   image_args "$@"        parse --hub, --name, --out, --tree and -h (any other argument is
#                          an error); sets hub, name, out, tree_only
#   publish TREE           print TREE with --tree; else pack it into an flist (printed) and, with
#                          --hub, push it to that hub into the zgrid identity's namespace and
#                          print its URL
#   keep_tree TREE         move the finished TREE.tmp to TREE and remove the trees of the image's
#                          earlier inputs (TREE's name with another hash): never used again
# Before sourcing, set `name` and `out` (the defaults) and `here` (the repository).

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

image_args() {
    hub="" tree_only=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --hub) hub="$2"; shift 2 ;;
            --name) name="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            --tree) tree_only=1; shift ;;
            -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) printf 'error: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
        esac
    done
}

keep_tree() {
    local tree=$1 old
    mv "$tree.tmp" "$tree"
    for old in "${tree%-*}"-*; do
        [ "$old" = "$tree" ] || rm -rf "$old"
    done
}

publish() {
    local tree=$1 zgrid="${ZGRID:-}" candidate flist owner
    if [ -n "$tree_only" ]; then
        echo "$tree"
        return 0
    fi
    if [ -z "$zgrid" ]; then
        for candidate in "$here/target/release/zgrid" "$here/target/debug/zgrid" "$(command -v zgrid || true)"; do
            if [ -n "$candidate" ] && [ -x "$candidate" ]; then zgrid="$candidate"; break; fi
        done
    fi
    [ -n "$zgrid" ] || { echo "$tree"; die "no zgrid binary to pack the flist with: build it (cargo build --release -p zgrid) or set ZGRID"; }
    mkdir -p "$out"
    flist="$out/$name"
    # Packing a tree again gives the same flist: skip it when the flist is this tree's.
    if [ "$(cat "$flist.tree" 2>/dev/null)" != "$tree" ] || [ ! -f "$flist" ]; then
        step "packing $tree into $flist"
        # (The store holds this flist's chunks only: an earlier tree's would never be read again.)
        rm -rf "$flist.tree" "$out/store"
        "$zgrid" flist create "$tree" --output "$flist" --store "$out/store" >&2
        echo "$tree" > "$flist.tree"
    fi
    if [ -z "$hub" ]; then
        echo "$flist"
        return 0
    fi
    step "pushing $name to $hub"
    "$zgrid" flist push "$flist" --store "$out/store" --name "$name" --hub "$hub" >&2
    owner=$("$zgrid" --json hub ls me --hub "$hub" | jq -r --arg n "$name" '.[] | select(.name == $n) | .path')
    [ -n "$owner" ] || die "the hub does not list $name after the push"
    echo "${hub%/}$owner"
}
