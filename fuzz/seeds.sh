#!/bin/sh
# Writes the fuzzers' seed corpora, made from tiny valid (and a few nearly valid) IDX files, into
# DIR/fuzz_idx, DIR/fuzz_idx_gz, DIR/fuzz_idx_deflate, DIR/fuzz_dataset, and safetensors files
# for fuzz_safetensors's model (Linear(4,3)-ReLU-Linear(3,2)) into DIR/fuzz_safetensors, and
# tiny PNG / JPEG images (one per kind the decoder handles differently, made by PIL and libpng,
# kept here as base64) into DIR/fuzz_image: a few kilobytes in all, regenerated rather than
# committed. Usage: fuzz/seeds.sh DIR
set -eu
dir=${1:?usage: fuzz/seeds.sh DIR}
mkdir -p "$dir/fuzz_idx" "$dir/fuzz_idx_gz" "$dir/fuzz_idx_deflate" "$dir/fuzz_dataset" "$dir/fuzz_safetensors" \
         "$dir/fuzz_image" "$dir/fuzz_checkpoint"

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

# images: PNG grey, RGB, RGBA, grey+alpha, palette with tRNS, 1-bit, 16-bit, Adam7-interlaced RGB;
# JPEG grey, RGB 4:2:0 (odd size), 4:4:4, progressive, CMYK (refused). img NAME BASE64
img() { printf '%s' "$2" | base64 -d > "$dir/fuzz_image/$1"; }
img grey.png         'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGCAAAAAAukAuXAAAAL0lEQVR4nAEkANv/AP/kInnzAr4iYe21BJW7+hOpAPPNGOwIAgPXzzjKAW89JtwCSEEQi4MF8p8AAAAASUVORK5CYII='
img rgb.png          'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGCAIAAACEmcMcAAAAa0lEQVR4nAFgAJ//AKlyzT+gL9RPSHB43kUfXwBsJG3uRTNR5NPKOspBTEYAwWgq+tGkAiyyjGIC8xUyBFym3RjK89sCmAleoqkdMgCawsOJSJlK0TpMaVQK1eIC2eazTYGsz+jl2MRKQ1kqF00sz5ff/IIAAAAASUVORK5CYII='
img rgba.png         'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGCAYAAAAL+1RLAAAAiUlEQVR4nAF+AIH/AKlyzf8/oC/k1E9IInB43nlFH1/zAsOyoL6vpQQifZWLYVrC7O38Lee1AMFoKlL60aTBAiyyu4xiApbzFTJRAB0OB/M1MpfN3S48GObApOycf9YIAJrCw/aJSJmkStE650xpVCQK1eLSAtnms3lNgawIz+jl69jESopDWSresUlAi88TJj4AAAAASUVORK5CYII='
img la.png           'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGCAQAAACh8pzAAAAATUlEQVR4nAFCAL3/AP//5OQiInl58/MCvr4iImFh7e21tQSVlbu7+voTE6mpAPPzzc0YGOzsCAgCAwPX18/PODjKygFvbz09Jibc3AICsnYhDLyqPWsAAAAASUVORK5CYII='
img palette-trns.png 'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGBAMAAAD51Ul4AAAAD1BMVEXBwY4w0YSCdnW0NVkqK25pJdSKAAAAA3RSTlP//wDXyg1BAAAAIElEQVR4nGNQNHJgcBZ2YDBwNmBwMVBgYBISYFAQcQAAJ5IC+eR422YAAAAASUVORK5CYII='
img bits1.png        'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGAQAAAAAjgGnmAAAAFElEQVR4nGO4wbSB6QXDBYYXDBkAHTAElbfGijEAAAAASUVORK5CYII='
img grey16.png       'iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGEAAAAAB+ANfUAAAATUlEQVR4nAFCAL3/AP//5OQiInl58/MCvr4iImFh7e21tQSVlbu7+voTE6mpAPPzzc0YGOzsCAgCAwPX18/PODjKygFvbz09Jibc3AICsnYhDLyqPWsAAAAASUVORK5CYII='
img grey.jpg         '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/wAALCAAGAAUBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/AOmnsdWa5e+8O+IbjTEv8XEk80JuZrjPA8zMigMuCcqcYcIFURgt/9k='
img rgb420.jpg       '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAoHBwgHBgoICAgLCgoLDhgQDg0NDh0VFhEYIx8lJCIfIiEmKzcvJik0KSEiMEExNDk7Pj4+JS5ESUM8SDc9Pjv/2wBDAQoLCw4NDhwQEBw7KCIoOzs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozv/wAARCAARAAkDASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCrIqXCLO2yKaMhYQjNmNt3R2Rjg8nndltgGBU/2LWP+gGP+/c3/wAXVdYx5Zu9OAEaIEaRIVPmgnGFZWyAQVGAwIyxPFN+2xf8/wBq3/fTf/HqzqN9JW+/y7HpYNzTdn0XWS7+T9SxrX/IZ0v/AK4zf+zUyiiuWr8K9Zf+lMXD38F+i/U//9k='
img rgb444.jpg       '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBT/wAARCAAGAAUDAREAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDzz4oz+GPDmq2Wi+NUv9Svre2jmhn0mFFhMciLyVldpN7bd7FpH+ZyowqLnDA5rh5YeVWpOpGnzziuXk5pVFyyqznpbVzSilooxWid2+2hnWIr1KscJgKVVpx5vaVatNR5oRklTVKPwu95KTd581S96kkf/9k='
img progressive.jpg  '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZGNywtQFdBRkxOUlNSMj5aYVpQYEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT0//wgARCAAQABADASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAAAwAB/8QAFQEBAQAAAAAAAAAAAAAAAAAAAAL/2gAMAwEAAhADEAAAAcGVX//EABkQAAIDAQAAAAAAAAAAAAAAAAECABEyMf/aAAgBAQABBQLk2dmwq//EABcRAAMBAAAAAAAAAAAAAAAAAAABITH/2gAIAQMBAT8Bys//xAAWEQADAAAAAAAAAAAAAAAAAAAAAWH/2gAIAQIBAT8BrP/EABsQAAICAwEAAAAAAAAAAAAAAAERACEyQVJR/9oACAEBAAY/AmaW/JYQ5lhDmM4z/8QAHRAAAQQCAwAAAAAAAAAAAAAAAQARITFhcUFRgf/aAAgBAQABPyFgDrNngtamoKg+YNqagqD5g2iULoOddL//2gAMAwEAAgADAAAAEBf/xAAWEQEBAQAAAAAAAAAAAAAAAAABAHH/2gAIAQMBAT8Q2Lf/xAAWEQEBAQAAAAAAAAAAAAAAAADwAaH/2gAIAQIBAT8QBtv/xAAcEAEBAAEFAQAAAAAAAAAAAAABESEAMVFh0aH/2gAIAQEAAT8QeUDUVKbBVw7dTDK5gFCUggFQaeGmVzAKEpBAKg08NESBRVgFECuFyn25/9k='
img cmyk.jpg         '/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwANCQoLCggNCwoLDg4NDxMgFRMSEhMnHB4XIC4pMTAuKS0sMzpKPjM2RjcsLUBXQUZMTlJTUjI+WmFaUGBKUVJP/8AAFAgABgAFBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwCpe6hCly1vcabDdyRhWJaZ4lUMikbQvPPU5J+Yk96ztWtrO2lhg1OecyCMMjQRKwKngZ3nOeM5yeuOiis2fUNOijCanJflEkZUNsqAu+FLu27nJLDueBjjHPp1f//Z'
img interlaced.png   'iVBORw0KGgoAAAANSUhEUgAAAAkAAAAHCAIAAAEi/sChAAAAbElEQVQImWNg4BS68fAVQ05pHUNNa9+Lj79CYtMYzOw9Fq3ewrBp9xE5dQNGO/cAMyTAuOvwGRS+tIounMNiZ2cH5zBMX7Dy7LX7zDyilk7ejFfvPUfokdcwlMYBWOzs7LDL2Nkxzl6yFpc+AKE8MPEOkce8AAAAAElFTkSuQmCC'
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
