# Sourced at the start of every call on the lent GPU machine (docs/gpu_runs.md): unpacks the data kit carried in
# .devkit/, installs the carried pure-Python wheels, and prints what the machine is. Never run on a CI machine.
set -e
mkdir -p data/ferplus && tar -xJf .devkit/ferplus_trainval.tar.xz -C data/ferplus
if [ -f .devkit/test/test.npz ]; then mkdir -p data/ferplus_test && cp .devkit/test/test.npz data/ferplus_test/; fi
if ls .devkit/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .devkit/wheels/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"
