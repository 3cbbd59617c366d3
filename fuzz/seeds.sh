#!/bin/sh
# Writes the fuzzers' seed corpora, made from tiny valid (and a few nearly valid) IDX files, into
# DIR/fuzz_idx, DIR/fuzz_idx_gz, DIR/fuzz_idx_deflate, DIR/fuzz_dataset: a few hundred bytes in
# all, regenerated rather than committed. Usage: fuzz/seeds.sh DIR
set -eu
dir=${1:?usage: fuzz/seeds.sh DIR}
mkdir -p "$dir/fuzz_idx" "$dir/fuzz_idx_gz" "$dir/fuzz_idx_deflate" "$dir/fuzz_dataset"

# hex "00 00 08 01": those bytes on stdout (dash's printf has octal escapes, not \x)
hex() { for h in $1; do printf "\\$(printf %03o "0x$h")"; done; }

# name and bytes of each raw seed
raw() {
  hex "$2" > "$dir/fuzz_idx/$1"
  gzip -9 -n -c "$dir/fuzz_idx/$1" > "$dir/fuzz_idx_gz/$1.gz"
  { hex "06 37 00"; cat "$dir/fuzz_idx/$1"; } > "$dir/fuzz_idx_deflate/$1"   # level 6, window 15, mem 8
}
raw labels-1d   "00 00 08 01 00 00 00 03 01 02 09"
raw images-2d   "00 00 08 02 00 00 00 02 00 00 00 03 00 10 20 30 40 ff"
raw images-3d   "00 00 08 03 00 00 00 02 00 00 00 02 00 00 00 02 01 02 03 04 05 06 07 08"
raw images-4d   "00 00 08 04 00 00 00 01 00 00 00 01 00 00 00 02 00 00 00 02 0a 0b 0c 0d"
raw short       "00 00 08 02 00 00 00 02 00 00 00 03 00 10 20"
raw trailing    "00 00 08 01 00 00 00 02 05 06 07"
raw bad-type    "00 00 0d 01 00 00 00 01 00"

# gzip only: two members read as one stream; a long run of zeros (near deflate's bound)
cat "$dir/fuzz_idx_gz/images-2d.gz" "$dir/fuzz_idx_gz/labels-1d.gz" > "$dir/fuzz_idx_gz/members.gz"
{ hex "00 00 08 01 00 00 10 00"; head -c 4096 /dev/zero; } | gzip -9 -n -c > "$dir/fuzz_idx_gz/zeros.gz"
hex "06 37 01" > "$dir/fuzz_idx_deflate/images-3d-2members"
cat "$dir/fuzz_idx/images-3d" >> "$dir/fuzz_idx_deflate/images-3d-2members"

# dataset: 2 bytes (little-endian) = the images file's length, then images, then labels
ds() { { hex "$2"; hex "$3"; hex "$4"; } > "$dir/fuzz_dataset/$1"; }
ds two-images   "18 00" "00 00 08 03 00 00 00 02 00 00 00 02 00 00 00 02 01 02 03 04 05 06 07 08" \
                "00 00 08 01 00 00 00 02 03 09"
ds nchw         "18 00" "00 00 08 04 00 00 00 01 00 00 00 01 00 00 00 02 00 00 00 02 0a 0b 0c 0d" \
                "00 00 08 01 00 00 00 01 ff"
ds images-1d   "09 00" "00 00 08 01 00 00 00 01 05" "00 00 08 01 00 00 00 01 03"
ds mismatch     "18 00" "00 00 08 03 00 00 00 02 00 00 00 02 00 00 00 02 01 02 03 04 05 06 07 08" \
                "00 00 08 01 00 00 00 03 03 09 01"
