# bench/gpu-issue11.sh, the peers: llama.cpp CUDA, PyTorch, bitsandbytes.
# Modes: llamacpp, peers, allpeers.
# Sourced by bench/gpu-issue11.sh (which sets OUT and loads lib.sh); $1 is the mode.
#   llamacpp prepare|bench [MODEL]: the llama.cpp CUDA peer (bench/peers/llamacpp-cuda.sh, needs
#            .gpu/llamacpp.tar.xz from bench/peers/fetch-llamacpp.sh). `prepare` builds it on the GPU
#            machine and writes the F16/Q8_0/Q4_0 GGUFs of MODEL (default llama-3.2-3b) into /tmp/peer;
#            a call cut short by the time limit goes on in the next one, made while the machine is warm.
#            `bench` runs llama-bench on them, then minilab bench (.gpu/minilab.xz) on the same shape in
#            f16/int8/nf4, and prints both side by side at matched bits (Q8_0: 8.5 bits a weight against
#            int8's 8 plus a row scale; Q4_0 and nf4: 4.5 each).
#   peers [VARIANTS]: the PyTorch peers (bench/peers/torch_bnb.py, one process a variant; default
#            bf16,static; also compile, nf4 and int8 with bitsandbytes from .gpu/bnb.zip) on the synthetic
#            3B, then minilab bench on the same shape in f16/int8/nf4, and minilab / peer at matched format.
#   allpeers [VARIANTS]: llama-bench (after `llamacpp prepare` in the call before), the PyTorch VARIANTS
#            and minilab on the synthetic 3B in one call, both tables.
case $1 in
llamacpp)
  m=${3:-llama-3.2-3b}
  if [ "${2:-bench}" = prepare ]; then
    STOP_AFTER_PREPARE=1 OUT=$OUT bash bench/peers/llamacpp-cuda.sh $m 90 2>&1 | tail -6
    exit 0
  fi
  OUT=$OUT bash bench/peers/llamacpp-cuda.sh $m 90 2>&1 | tail -12
  minilab_peer $m
  python3 bench/peers/side_by_side.py "$OUT" $m | tee "$OUT/table.md"
  pack llamacpp-$m table.md
  ;;
peers)
  torch_peers ${2:-bf16,static}
  minilab_peer llama-3.2-3b
  torch_table llama-3.2-3b
  pack peers torch-table.md
  ;;
allpeers)
  # Every peer and minilab on the synthetic 3B in one call: llama-bench (F16, Q8_0, Q4_0, from the
  # GGUFs that `llamacpp prepare` left in /tmp/peer in the call before), the PyTorch VARIANTS (default
  # bf16,static), then minilab in f16/int8/nf4; both tables.
  OUT=$OUT bash bench/peers/llamacpp-cuda.sh llama-3.2-3b 90 2>&1 | tail -12
  torch_peers ${2:-bf16,static}
  minilab_peer llama-3.2-3b
  python3 bench/peers/side_by_side.py "$OUT" llama-3.2-3b | tee "$OUT/table.md"
  torch_table llama-3.2-3b
  pack allpeers table.md torch-table.md
  ;;
esac
