#!/usr/bin/env bash
# PCL cross-checks for GraftPoints, in both directions.
#
#   bash Tools/make_pcd_fixtures.sh fixtures   rewrite Tests/GraftPointsTests/Fixtures/pcl with
#                                              PCD files written by PCL's own tools
#   bash Tools/make_pcd_fixtures.sh check      build graft, convert the fixtures with it to PCD
#                                              (ascii, binary, binary_compressed) and PLY (ascii,
#                                              little and big endian), and check that PCL, and
#                                              plyfile and Open3D when importable, read the same
#                                              values back
#
# Needs pcl-tools (`apt-get install -y pcl-tools`: PCL 1.13 on Debian 12) and python3 with numpy;
# set PYTHON to an interpreter that also has plyfile and open3d for those checks. Not run in CI:
# the fixtures are committed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
python=${PYTHON:-python3}
fixtures=Tests/GraftPointsTests/Fixtures/pcl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for tool in pcl_xyz2pcd pcl_convert_pcd_ascii_binary pcl_normal_estimation pcl_ply2pcd \
  pcl_png2pcd pcl_fpfh_estimation pcl_pcd_change_viewpoint pcl_pcd2ply pcl_pcd_introduce_nan; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y pcl-tools" >&2; exit 1; }
done

# Writes `name_ascii.pcd` (9 significant digits, so every float reads back exactly),
# `name_binary.pcd` and `name_binary_compressed.pcd` from one PCD file, with PCL.
three_encodings() {
  local source=$1 name=$2
  pcl_convert_pcd_ascii_binary "$source" "$fixtures/${name}_ascii.pcd" 0 9 >/dev/null 2>&1
  pcl_convert_pcd_ascii_binary "$source" "$fixtures/${name}_binary.pcd" 1 >/dev/null 2>&1
  pcl_convert_pcd_ascii_binary "$source" "$fixtures/${name}_binary_compressed.pcd" 2 >/dev/null 2>&1
}

make_fixtures() {
  rm -rf "$fixtures"
  mkdir -p "$fixtures/inputs"
  # The inputs: plain text and PNG files that PCL's converters read (Python's standard library
  # only, so they are the same on every machine).
  "$python" - "$fixtures/inputs" <<'EOF'
import random, struct, sys, zlib
out = sys.argv[1]
rng = random.Random(7)
with open(f"{out}/points.xyz", "w") as f:
    for _ in range(12):
        f.write(" ".join("%.6f" % rng.uniform(-1, 1) for _ in range(3)) + "\n")
with open(f"{out}/colors.ply", "w") as f:
    f.write("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
            "end_header\n0.1 0.2 0.3 255 0 0\n1.5 -2.25 3 0 255 0\n-1 0 0.5 0 0 255\n"
            "2 2 2 12 34 56\n")
with open(f"{out}/intensity.ply", "w") as f:
    f.write("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            "property float z\nproperty float confidence\nproperty float intensity\n"
            "end_header\n0.5 0.25 -1 0.85 0.5\n1 2 3 0.9 0.75\n-2 0.125 4 0.4 1\n")
def png(path, width, height, color_type, bit_depth, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + row for row in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))
# A 4 x 3 colour image (red = 80 row, green = 60 column, blue = 200 - 50 row) and a depth image in
# millimetres with three zeros, which PCL turns into NaN points of an organised cloud.
png(f"{out}/color.png", 4, 3, 2, 8,
    [bytes(v for j in range(4) for v in (80 * i, 60 * j, 200 - 50 * i)) for i in range(3)])
depth = [[1000, 1200, 0, 1500], [900, 0, 1100, 1300], [0, 1000, 1000, 2000]]
png(f"{out}/depth.png", 4, 3, 0, 16, [b"".join(struct.pack(">H", d) for d in row) for row in depth])
EOF
  local in=$fixtures/inputs
  pcl_xyz2pcd "$in/points.xyz" "$work/xyz.pcd" >/dev/null
  three_encodings "$work/xyz.pcd" xyz
  pcl_normal_estimation "$work/xyz.pcd" "$work/normals.pcd" -k 5 >/dev/null
  three_encodings "$work/normals.pcd" normals
  pcl_ply2pcd -format 1 "$in/colors.ply" "$work/rgb.pcd" >/dev/null
  three_encodings "$work/rgb.pcd" rgb
  pcl_ply2pcd -format 1 "$in/intensity.ply" "$work/intensity.pcd" >/dev/null
  three_encodings "$work/intensity.pcd" intensity
  pcl_png2pcd -format 1 --intensity_type FLOAT "$in/color.png" "$in/depth.png" \
    "$work/organized.pcd" >/dev/null
  three_encodings "$work/organized.pcd" organized
  pcl_fpfh_estimation "$work/normals.pcd" "$work/fpfh.pcd" -k 5 >/dev/null 2>&1
  three_encodings "$work/fpfh.pcd" fpfh
  pcl_pcd_change_viewpoint "$work/xyz.pcd" "$fixtures/viewpoint_binary_compressed.pcd" \
    -viewpoint 1,2,3,0.7071068,0,0.7071068,0 >/dev/null
  # PLY files that PCL writes: with normals, curvature and its `camera` element; with packed
  # colours; with a NaN coordinate (pcl_pcd_introduce_nan replaces values and adds rgba); and the
  # malformed file PCL 1.13 writes for a cloud whose rgb field is typed U (four colour bytes per
  # vertex under three declared uchar properties), which PCL itself reads back as 0 points.
  pcl_pcd2ply -format 1 "$fixtures/normals_binary.pcd" "$fixtures/normals_pcl.ply" >/dev/null 2>&1
  pcl_pcd2ply -format 1 "$fixtures/rgb_binary.pcd" "$fixtures/rgb_pcl.ply" >/dev/null 2>&1
  pcl_pcd_introduce_nan "$fixtures/xyz_binary.pcd" "$fixtures/nan_ascii.pcd" 25 >/dev/null 2>&1
  pcl_pcd2ply -format 1 "$fixtures/nan_ascii.pcd" "$fixtures/nan_pcl.ply" >/dev/null 2>&1
  pcl_pcd2ply -format 1 "$fixtures/organized_binary.pcd" "$fixtures/organized_pcl_malformed.ply" \
    >/dev/null 2>&1
  echo "fixtures: wrote $(find "$fixtures" -name '*.pcd' -o -name '*.ply' | wc -l) PCD and PLY files to $fixtures"
}

check() {
  swift build --product graft >/dev/null
  local graft
  graft="$(swift build --show-bin-path)/graft"
  local g=$work/graft
  mkdir -p "$g"
  local sources=(xyz normals rgb intensity organized fpfh)
  for name in "${sources[@]}"; do
    for enc in ascii binary binary_compressed; do
      "$graft" points convert "$fixtures/${name}_binary.pcd" "$g/${name}_$enc.pcd" --format "$enc" >/dev/null
      # PCL's own reader, writing the cloud back as text with every digit.
      pcl_convert_pcd_ascii_binary "$g/${name}_$enc.pcd" "$g/${name}_$enc.pcl.pcd" 0 9 >/dev/null 2>&1
      # And PCL's generic loader (pcl::io::load), through pcl_converter.
      pcl_converter -f binary "$g/${name}_$enc.pcd" "$g/${name}_$enc.conv.pcd" >/dev/null 2>&1
      pcl_convert_pcd_ascii_binary "$g/${name}_$enc.conv.pcd" "$g/${name}_$enc.conv.pcl.pcd" 0 9 \
        >/dev/null 2>&1
    done
    for enc in ascii binary binary_big_endian; do
      "$graft" points convert "$fixtures/${name}_binary.pcd" "$g/${name}_$enc.ply" --format "$enc" \
        >/dev/null 2>&1
      # PCL reads the PLY and writes a binary PCD, then prints that with every digit.
      pcl_ply2pcd -format 1 "$g/${name}_$enc.ply" "$g/${name}_$enc.ply.pcd" >/dev/null
      pcl_convert_pcd_ascii_binary "$g/${name}_$enc.ply.pcd" "$g/${name}_$enc.ply.pcl.pcd" 0 9 >/dev/null 2>&1
      pcl_converter -f binary "$g/${name}_$enc.ply" "$g/${name}_$enc.ply.conv.pcd" >/dev/null 2>&1
      pcl_convert_pcd_ascii_binary "$g/${name}_$enc.ply.conv.pcd" "$g/${name}_$enc.ply.conv.pcl.pcd" 0 9 \
        >/dev/null 2>&1
    done
  done
  # A mesh sampled by Graft, with normals.
  "$graft" points convert Tests/GraftPointsTests/Fixtures/real/bunny.ply "$g/bunny_binary_compressed.pcd" \
    --format binary_compressed --points 1000 --seed 1 >/dev/null 2>&1
  "$graft" points convert Tests/GraftPointsTests/Fixtures/real/bunny.ply "$g/bunny.ply" \
    --points 1000 --seed 1 >/dev/null 2>&1
  pcl_convert_pcd_ascii_binary "$g/bunny_binary_compressed.pcd" "$g/bunny.pcl.pcd" 0 9 >/dev/null 2>&1
  "$python" - "$fixtures" "$g" "${sources[@]}" <<'EOF'
import math, struct, sys
import numpy as np

fixtures, g, names = sys.argv[1], sys.argv[2], sys.argv[3:]
failures = []

def ascii_pcd(path):
    """Fields and values of a PCD file that PCL wrote as text."""
    with open(path) as f:
        lines = f.read().split("\n")
    header, i = {}, 0
    while True:
        key, *values = lines[i].split()
        i += 1
        if key == "#":
            continue
        header[key] = values
        if key == "DATA":
            break
    counts = [int(c) for c in header["COUNT"]]
    columns = []
    for name, count in zip(header["FIELDS"], counts):
        columns += [name] * count
    rows = [l.split() for l in lines[i:] if l.strip()]
    return header, columns, rows

def values(path, field):
    header, columns, rows = ascii_pcd(path)
    idx = [k for k, c in enumerate(columns) if c == field]
    kind = header["TYPE"][header["FIELDS"].index(field)]
    if field in ("rgb", "rgba"):
        return np.array([[int(r[k]) & (0xFFFFFFFF if field == "rgba" else 0xFFFFFF) for k in idx] for r in rows])
    return np.array([[float(r[k]) for k in idx] for r in rows], dtype=np.float64)

def float32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)

def same(a, b):
    """Equal as float32 values (text files print 9 digits; both sides round to the same float),
    NaN matching NaN."""
    a, b = float32(a), float32(b)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))

def check(label, ok):
    print(("ok   " if ok else "FAIL ") + label)
    if not ok:
        failures.append(label)

for name in names:
    # The reference: the PCL fixture itself, as PCL writes it in text.
    ref_path = f"{fixtures}/{name}_ascii.pcd"
    _, ref_columns, _ = ascii_pcd(ref_path)
    fields = list(dict.fromkeys(ref_columns))
    for enc in ("ascii", "binary", "binary_compressed"):
        path = f"{g}/{name}_{enc}.pcl.pcd"
        ok = all(same(values(path, f), values(ref_path, f)) for f in fields)
        check(f"PCL reads Graft's {name} PCD ({enc}): every field equal", ok)
        path = f"{g}/{name}_{enc}.conv.pcl.pcd"
        ok = all(same(values(path, f), values(ref_path, f)) for f in fields)
        check(f"pcl_converter reads Graft's {name} PCD ({enc}): every field equal", ok)
    for enc in ("ascii", "binary", "binary_big_endian"):
        path = f"{g}/{name}_{enc}.ply.pcl.pcd"
        _, columns, _ = ascii_pcd(path)
        common = [f for f in fields if f in columns]
        finite = ~np.isnan(values(ref_path, "x")[:, 0])
        ok = all(same(values(path, f), values(ref_path, f)[finite]) for f in common)
        check(f"PCL reads Graft's {name} PLY ({enc}): {' '.join(common)} equal", ok)
        # pcl_converter loads PLY as a mesh: positions, normals and colours (as rgba) come
        # through, other properties read as 0 there (PCL's loader, whoever wrote the file).
        path = f"{g}/{name}_{enc}.ply.conv.pcl.pcd"
        _, columns, _ = ascii_pcd(path)
        geometric = [f for f in fields if f in ("x", "y", "z", "normal_x", "normal_y", "normal_z")]
        ok = all(same(values(path, f), values(ref_path, f)[finite]) for f in geometric)
        if "rgb" in fields:
            ok = ok and "rgba" in columns and same(values(path, "rgba") & 0xFFFFFF, values(ref_path, "rgb")[finite])
            geometric.append("rgb")
        check(f"pcl_converter reads Graft's {name} PLY ({enc}): {' '.join(geometric)} equal", ok)

bunny = values(f"{g}/bunny.pcl.pcd", "x")
check("PCL reads Graft's sampled bunny (binary_compressed): 1000 points", bunny.shape == (1000, 1))

try:
    import plyfile
except ImportError:
    plyfile = None
    print("skip plyfile (not importable with this python)")
if plyfile:
    for name in names:
        ref_path = f"{fixtures}/{name}_ascii.pcd"
        finite = ~np.isnan(values(ref_path, "x")[:, 0])
        for enc in ("ascii", "binary", "binary_big_endian"):
            vertex = plyfile.PlyData.read(f"{g}/{name}_{enc}.ply")["vertex"]
            ok = all(same(float32(vertex[a]), values(ref_path, a)[finite][:, 0]) for a in "xyz")
            props = [p.name for p in vertex.properties]
            if "nx" in props:
                ok = ok and all(same(float32(vertex["n" + a]), values(ref_path, "normal_" + a)[finite][:, 0]) for a in "xyz")
            if "red" in props:
                rgb = values(ref_path, "rgb")[finite][:, 0].astype(np.int64)
                ok = ok and same(vertex["red"], (rgb >> 16) & 255) and same(vertex["green"], (rgb >> 8) & 255) and same(vertex["blue"], rgb & 255)
            check(f"plyfile reads Graft's {name} PLY ({enc}): {' '.join(props)} equal", ok)
    mesh_ok = plyfile.PlyData.read(f"{g}/bunny.ply")["vertex"].count == 1000
    check("plyfile reads Graft's sampled bunny PLY: 1000 vertices", mesh_ok)

try:
    import open3d as o3d
except ImportError:
    o3d = None
    print("skip open3d (not importable with this python)")
if o3d:
    for name in names:
        ref_path = f"{fixtures}/{name}_ascii.pcd"
        x = values(ref_path, "x")[:, 0]
        finite = ~np.isnan(x)
        ref_xyz = np.stack([values(ref_path, a)[:, 0] for a in "xyz"], axis=1)
        _, columns, _ = ascii_pcd(ref_path)
        for path, keep in [(f"{g}/{name}_{e}.pcd", "pcd") for e in ("ascii", "binary", "binary_compressed")] + \
                          [(f"{g}/{name}_{e}.ply", "ply") for e in ("ascii", "binary", "binary_big_endian")]:
            pc = o3d.io.read_point_cloud(path, remove_nan_points=False, remove_infinite_points=False)
            pts = np.asarray(pc.points)
            want = ref_xyz if keep == "pcd" else ref_xyz[finite]
            ok = same(pts, float32(want))
            if "normal_x" in columns:
                n = np.stack([values(ref_path, "normal_" + a)[:, 0] for a in "xyz"], axis=1)
                ok = ok and pc.has_normals() and same(np.asarray(pc.normals), float32(n if keep == "pcd" else n[finite]))
            if "rgb" in columns:
                rgb = values(ref_path, "rgb")[:, 0].astype(np.int64)
                c = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1) / 255.0
                c = c if keep == "pcd" else c[finite]
                ok = ok and pc.has_colors() and np.allclose(np.asarray(pc.colors), c, atol=1e-6)
            check(f"Open3D reads {path.split('/')[-1]}: points{' normals' if 'normal_x' in columns else ''}{' colours' if 'rgb' in columns else ''} equal", ok)

if failures:
    print(f"{len(failures)} checks failed")
    sys.exit(1)
print("all checks passed")
EOF
}

case "$mode" in
  fixtures) make_fixtures ;;
  check) check ;;
  *) echo "usage: $0 fixtures|check" >&2; exit 2 ;;
esac
