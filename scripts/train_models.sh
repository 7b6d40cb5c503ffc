#!/usr/bin/env bash
# Retrain the shipped default bundles from fixed seeds (`make models`).
# Wall times measured on the 2-core CPU machine are in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIO=${STUDIO:-.venv/bin/studio}

# prose, songs, folk: forward pass in bf16 where the CPU has
# native bf16 (AVX512-BF16 / AMX: about 1.6x the fp32 tokens/s, measured; elsewhere fp32,
# which reaches fewer steps in the 30 minutes).  The schedule is sized for the bf16 speed.
PRECISION=fp32
if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo 2>/dev/null; then PRECISION=bf16; fi
# prose: 2x512 LSTM with a 256-wide embedding on tinyshakespeare, 30 minutes.
# The weights are averaged as they train (--ema 0.999); the schedule ends at 10% of the
# learning rate after 6,500 steps (28 minutes on a 2-core Xeon with AMX; a slower CPU
# stops at the time limit first).  The fp32 graph stores its weights as float16
# (--fp16-weights: 3.7 M parameters in fp32 + int8 + MC-dropout would pass 16 MB).
$STUDIO train corpora/shakespeare --name prose --hidden-size 512 --layers 2 --embedding-size 256 \
  --dropout 0.25 --lr 3e-3 --warmup-steps 100 --batch-size 32 --seq-len 128 --max-steps 6500 --ema 0.999 \
  --eval-every 500 --patience 100 --max-minutes 30 --seed 1337 --precision $PRECISION --no-export
$STUDIO export runs/prose --quantize int8 --fp16-weights --out export/prose  # fp32 + int8 + the MC-dropout graph

# code and markdown: smaller 2x256 LSTMs, 12 minutes each
for corpus in code markdown; do
  $STUDIO train corpora/$corpus --name $corpus --hidden-size 256 --layers 2 --embedding-size 48 \
    --dropout 0.1 --lr 4e-3 --warmup-steps 30 --batch-size 32 --seq-len 128 --max-steps 1500 \
    --eval-every 250 --patience 100 --max-minutes 12 --seed 1337 --quantize int8 --out export/$corpus
done

# music: a 2x512 events LSTM on the Bach chorales (transposed +-5 semitones), 30 minutes
# (6,962 of the 7,000 steps on a 2-core Xeon with AMX), weights averaged; the fp32 graph
# stores its weights as float16, as prose's does (3.6 M parameters)
$STUDIO train corpora/songs/bach --name songs --domain music --hidden-size 512 --layers 2 \
  --embedding-size 64 --dropout 0.2 --lr 3e-3 --warmup-steps 100 --batch-size 32 --seq-len 128 --max-steps 7000 \
  --ema 0.999 --precision $PRECISION --eval-every 500 --patience 100 --max-minutes 30 --seed 1337 --no-export
$STUDIO export runs/songs --quantize int8 --fp16-weights --out export/songs

# folk: an events LSTM on O'Neill's 1,857 tunes (melodies in the keys they were written in:
# no transposition), the held-out tenth a random draw of whole tunes; the 3,600 steps take
# about 21 minutes on a 2-core Xeon with AMX; weights averaged, the best validation exported
$STUDIO train corpora/songs/oneills1850 --name folk --domain music --hidden-size 384 --layers 2 \
  --embedding-size 64 --dropout 0.2 --lr 3e-3 --warmup-steps 100 --batch-size 32 --seq-len 256 --max-steps 3600 \
  --ema 0.999 --precision $PRECISION --eval-every 400 --patience 100 --max-minutes 30 --seed 1337 \
  --held-out random --transpose 0 --no-export
$STUDIO export runs/folk --quantize int8 --fp16-weights --out export/folk

# handwriting: text-conditioned synthesis net on the synthetic Hershey corpus (seeded), and
# the unconditional doodle net on Omniglot strokes: the same `studio train`, the mixture head
$STUDIO train corpora/handwriting --domain strokes --name handwriting --hidden-size 128 --layers 3 \
  --batch-size 32 --lr 2e-3 --clip 3 --weight-decay 0 --max-steps 1500 --eval-every 100 --patience 100 \
  --max-minutes 75 --seed 1 --out export/handwriting
$STUDIO train corpora/handwriting/omniglot_strokes.npz --domain strokes --name doodle --hidden-size 256 \
  --layers 2 --batch-size 64 --lr 2e-3 --clip 3 --weight-decay 0 --max-steps 2000 --eval-every 200 \
  --patience 100 --max-minutes 25 --seed 1 --out export/doodle
# the variational RNN on the same strokes (README "Variational RNN": 20 minutes beside two other runs)
$STUDIO train corpora/handwriting/omniglot_strokes.npz --domain strokes --model vrnn --name doodle-vrnn \
  --hidden-size 256 --layers 1 --kl-warmup 50 --batch-size 64 --lr 2e-3 --clip 3 --weight-decay 0 --warmup-steps 20 \
  --max-steps 2000 --eval-every 50 --patience 100 --max-minutes 20 --seed 1 --out export/doodle-vrnn
