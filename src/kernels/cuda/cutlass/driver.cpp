// What params.cu needs of the CUDA libraries, under the names build.rs gives its references
// (minilab_<name>), so that no symbol of the CUDA runtime or driver is defined in minilab's binary:
// the driver's cuTensorMapEncodeTiled and the two device queries forward to entry points that
// src/kernels/cuda/cutlass.rs takes from the driver cudarc loaded (cuGetProcAddress) and hands over
// once with minilab_mixed_set_driver; the runtime's registration hooks do nothing, since params.cu
// launches nothing. Until the entry points are set, the forwarders fail (CUDA_ERROR_NOT_INITIALIZED).
#include <cstddef>
#include <cstdint>

namespace {
using Encode = int (*)(void*, unsigned, unsigned, void*, const uint64_t*, const uint64_t*, const unsigned*,
                       const unsigned*, unsigned, unsigned, unsigned, unsigned);
using CtxGetDevice = int (*)(int*);
using DeviceGetAttribute = int (*)(int*, int, int);
Encode g_encode = nullptr;
CtxGetDevice g_ctx_get_device = nullptr;
DeviceGetAttribute g_device_get_attribute = nullptr;
constexpr int NOT_INITIALIZED = 3;
void* g_handle = nullptr;
}  // namespace

extern "C" {
void minilab_mixed_set_driver(Encode encode, CtxGetDevice ctx_get_device, DeviceGetAttribute device_get_attribute) {
    g_encode = encode;
    g_ctx_get_device = ctx_get_device;
    g_device_get_attribute = device_get_attribute;
}
int minilab_cuTensorMapEncodeTiled(void* map, unsigned dtype, unsigned rank, void* addr, const uint64_t* dims,
                                   const uint64_t* strides, const unsigned* box, const unsigned* estrides,
                                   unsigned interleave, unsigned swizzle, unsigned l2, unsigned oob) {
    if (!g_encode) return NOT_INITIALIZED;
    return g_encode(map, dtype, rank, addr, dims, strides, box, estrides, interleave, swizzle, l2, oob);
}
// the runtime's cudaGetDevice: the current context's device
int minilab_cudaGetDevice(int* dev) { return g_ctx_get_device ? g_ctx_get_device(dev) : NOT_INITIALIZED; }
// the runtime's attribute numbers are the driver's
int minilab_cudaDeviceGetAttribute(int* value, int attr, int dev) {
    return g_device_get_attribute ? g_device_get_attribute(value, attr, dev) : NOT_INITIALIZED;
}
void** minilab___cudaRegisterFatBinary(void*) { return &g_handle; }
void minilab___cudaRegisterFatBinaryEnd(void**) {}
void minilab___cudaUnregisterFatBinary(void**) {}
void minilab___cudaRegisterVar(void**, char*, char*, const char*, int, size_t, int, int) {}
}
