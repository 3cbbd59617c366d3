#!/bin/sh
# Writes the fuzzers' seed corpora, made from tiny valid (and a few nearly valid) IDX files, into
# DIR/fuzz_idx, DIR/fuzz_idx_gz, DIR/fuzz_idx_deflate, DIR/fuzz_dataset, and safetensors files
# for fuzz_safetensors's model (Linear(4,3)-ReLU-Linear(3,2)) into DIR/fuzz_safetensors: a few
# kilobytes in all, regenerated rather than committed. Usage: fuzz/seeds.sh DIR
set -eu
dir=${1:?usage: fuzz/seeds.sh DIR}
mkdir -p "$dir/fuzz_idx" "$dir/fuzz_idx_gz" "$dir/fuzz_idx_deflate" "$dir/fuzz_dataset" "$dir/fuzz_safetensors" \
         "$dir/fuzz_checkpoint"

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

# safetensors: the 8-byte little-endian header length, the JSON padded with spaces to a multiple
# of 8, then data_n bytes of data, into $stdir (fuzz_safetensors unless set). st NAME JSON DATA_N
stdir=fuzz_safetensors
st() {
  n=${#2}; hl=$(( (n + 7) / 8 * 8 ))
  hex "$(printf '%02x %02x %02x %02x 00 00 00 00' $((hl & 255)) $((hl >> 8 & 255)) $((hl >> 16 & 255)) $((hl >> 24 & 255)))" \
    > "$dir/$stdir/$1"
  { printf '%s' "$2"; printf '%*s' $((hl - n)) ''; head -c "$3" /dev/zero | tr '\0' '\101'; } >> "$dir/$stdir/$1"
}
w0='"0.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]}'
b0='"0.bias":{"dtype":"F32","shape":[3],"data_offsets":[48,60]}'
w2='"2.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[60,84]}'
b2='"2.bias":{"dtype":"F32","shape":[2],"data_offsets":[84,92]}'
meta='"__metadata__":{"format":"pt","flexlearn_model":"small"}'
st valid      "{$meta,$w0,$b0,$w2,$b2}" 92
st no-meta    "{$b2,$w2,$b0,$w0}" 92
st missing    "{$w0,$b0,$w2}" 84
st extra      "{$w0,$b0,$w2,$b2,\"3.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[92,96]}}" 96
st f16        "{$w0,$b0,$w2,\"2.bias\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[84,88]}}" 88
st overlap    "{$w0,\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[40,52]},$w2,$b2}" 92
st shape      "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},$b0,$w2,$b2}" 92
st empty      "{}" 0

# checkpoints of the same model (fuzz_checkpoint): the state as an escaped JSON string in
# __metadata__, optimiser buffers and grad as flat F32 [64]
stdir=fuzz_checkpoint
cst() {  # cst NAME BUFS GRAD CALLBACKS -> the flexlearn_state entry
  printf '"flexlearn_state":"{\\"version\\":1,\\"position\\":{\\"epoch\\":1,\\"phase\\":\\"train\\",\\"iter\\":3},\\"n_iter\\":23,\\"n_epochs\\":2,\\"loader_epochs\\":[2,1],\\"optimizer\\":{\\"name\\":\\"SGD\\",\\"n_steps\\":23,\\"bufs\\":[%s],\\"groups\\":[{\\"lr\\":\\"0x1.99999ap-3\\",\\"mom\\":\\"0x0p+0\\",\\"wd\\":\\"0x0p+0\\"}]},\\"grad\\":%s,\\"grad_none\\":[1,1,0,1],\\"flat_numel\\":64,\\"checkpoint\\":{\\"every\\":3,\\"keep\\":3},\\"config\\":{\\"--bs\\":\\"32\\"},\\"callbacks\\":{%s}}"' "$1" "$2" "$3"
}
cbs='\"MetricsCB\":{\"acc\":[\"0x1.8p+4\",\"0x1p+5\",\"0x1.2p+3\",\"0x1p+5\"]},\"JsonlCB\":{\"bytes\":120,\"rows\":2},\"ProgressCB\":{\"losses\":[\"0x1.2p+1\"],\"val_x\":[],\"val_losses\":[]}'
cm() { printf '"__metadata__":{"format":"pt","flexlearn_model":"small",%s,"flexlearn_crc32":"00000000"}' "$(cst "$1" "$2" "$3")"; }
# fills in a seed's CRC-32 (of the file with the 8 digits as zeros: gzip's trailer holds it, little-endian)
crc() {
  f="$dir/$stdir/$1"
  at=$(grep -abo '"flexlearn_crc32":"' "$f" | head -n 1 | cut -d: -f1)
  c=$(gzip -c "$f" | tail -c 8 | head -c 4 | od -An -tx1 | tr -d ' \n')
  printf '%s' "$c" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/' | dd of="$f" bs=1 seek=$((at + 19)) conv=notrunc 2>/dev/null
}
g='"grad":{"dtype":"F32","shape":[64],"data_offsets":[92,348]}'
e1='"optim.exp_avg":{"dtype":"F32","shape":[64],"data_offsets":[92,348]}'
e2='"optim.exp_avg_sq":{"dtype":"F32","shape":[64],"data_offsets":[348,604]}'
st ckpt-sgd     "{$(cm '' false "$cbs"),$w0,$b0,$w2,$b2}" 92; crc ckpt-sgd
st ckpt-mom     "{$(cm '' true ''),$w0,$b0,$w2,$b2,$g}" 348; crc ckpt-mom
st ckpt-adam    "{$(cm '\"exp_avg\",\"exp_avg_sq\"' false "$cbs"),$w0,$b0,$w2,$b2,$e1,$e2}" 604; crc ckpt-adam
st ckpt-weights "{$meta,$w0,$b0,$w2,$b2}" 92
