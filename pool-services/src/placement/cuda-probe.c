/* SPDX-License-Identifier: MIT */
/*
 * The probe child: everything that touches the CUDA driver, run only in a
 * forked process that exits right after answering (cuda.c). The types
 * below are the driver API's ABI, declared here so that no CUDA header is
 * needed to build.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/cuda-private.h"
#include "pool-services/placement/inventory.h"

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct { unsigned char bytes[16]; } CUuuid;

#define CUDA_SUCCESS 0
#define CUDA_ERROR_INSUFFICIENT_DRIVER 35
#define CUDA_ERROR_NO_DEVICE 100
#define CUDA_ERROR_SYSTEM_DRIVER_MISMATCH 803
#define CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE 804
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;

typedef struct cuda_syms {
        CUresult (*cuInit)(unsigned flags);
        CUresult (*cuDriverGetVersion)(int *version);        /* optional */
        CUresult (*cuGetErrorName)(CUresult error, const char **name);
        CUresult (*cuDeviceGetCount)(int *count);
        CUresult (*cuDeviceGet)(CUdevice *dev, int ordinal);
        CUresult (*cuDeviceGetName)(char *name, int len, CUdevice dev);
        CUresult (*cuDeviceGetUuid)(CUuuid *uuid, CUdevice dev);  /* _v2 when there */
        CUresult (*cuDeviceGetPCIBusId)(char *id, int len, CUdevice dev);
        CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice dev);
        CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice dev);
        /* free VRAM without NVML */
        CUresult (*cuCtxCreate)(CUcontext *ctx, unsigned flags, CUdevice dev);
        CUresult (*cuCtxDestroy)(CUcontext ctx);
        CUresult (*cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);
} cuda_syms;

typedef struct nvml_syms {
        void *handle;
        nvmlReturn_t (*nvmlInit)(void);
        nvmlReturn_t (*nvmlShutdown)(void);
        nvmlReturn_t (*nvmlDeviceGetHandleByUUID)(const char *uuid, nvmlDevice_t *dev);
        nvmlReturn_t (*nvmlDeviceGetMemoryInfo)(nvmlDevice_t dev, nvmlMemory_t *mem);
} nvml_syms;

static json_t *failure(ps_cuda_status status, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static json_t *failure(ps_cuda_status status, const char *fmt, ...) {
        char msg[sizeof(((ps_cuda_result *) NULL)->message)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return json_pack("{s:s, s:s}", "status", ps_cuda_status_to_string(status), "message", msg);
}

/* dlsym into a function pointer without the object/function pointer cast
 * that ISO C leaves undefined. */
static bool sym(void *handle, const char *name, void *fnptr) {
        void *p = dlsym(handle, name);

        if (!p)
                return false;
        memcpy(fnptr, &p, sizeof(p));
        return true;
}

static const char *error_name(const cuda_syms *s, CUresult rc, char *buf, size_t len) {
        const char *name = NULL;

        if (s->cuGetErrorName && s->cuGetErrorName(rc, &name) == CUDA_SUCCESS && name)
                snprintf(buf, len, "%s (%d)", name, rc);
        else
                snprintf(buf, len, "CUDA error %d", rc);
        return buf;
}

/* The first missing required symbol, or NULL when all are there. */
static const char *load_syms(void *h, cuda_syms *s) {
#define REQUIRE(field, name) do { if (!sym(h, name, &s->field)) return name; } while (0)
        REQUIRE(cuInit, "cuInit");
        REQUIRE(cuGetErrorName, "cuGetErrorName");
        REQUIRE(cuDeviceGetCount, "cuDeviceGetCount");
        REQUIRE(cuDeviceGet, "cuDeviceGet");
        REQUIRE(cuDeviceGetName, "cuDeviceGetName");
        if (!sym(h, "cuDeviceGetUuid_v2", &s->cuDeviceGetUuid))
                REQUIRE(cuDeviceGetUuid, "cuDeviceGetUuid");
        REQUIRE(cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId");
        REQUIRE(cuDeviceGetAttribute, "cuDeviceGetAttribute");
        REQUIRE(cuDeviceTotalMem, "cuDeviceTotalMem_v2");
#undef REQUIRE
        sym(h, "cuDriverGetVersion", &s->cuDriverGetVersion);
        sym(h, "cuCtxCreate_v2", &s->cuCtxCreate);
        sym(h, "cuCtxDestroy_v2", &s->cuCtxDestroy);
        sym(h, "cuMemGetInfo_v2", &s->cuMemGetInfo);
        return NULL;
}

static json_t *init_failure(const cuda_syms *s, const char *library, CUresult rc) {
        char name[96];

        error_name(s, rc, name, sizeof(name));
        switch (rc) {
        case CUDA_ERROR_NO_DEVICE:
                return failure(PS_CUDA_NO_DEVICES, "cuInit: %s: the driver sees no CUDA device", name);
        case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
        case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
        case CUDA_ERROR_INSUFFICIENT_DRIVER:
                return failure(PS_CUDA_VERSION_MISMATCH,
                               "cuInit failed: %s: the kernel driver and %s are different "
                               "versions (reinstall the driver or reboot into it)", name, library);
        default:
                return failure(PS_CUDA_INIT_FAILED, "cuInit failed: %s", name);
        }
}

static void format_uuid(const CUuuid *u, char *buf, size_t len) {
        const unsigned char *b = u->bytes;

        snprintf(buf, len,
                 "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                 b[12], b[13], b[14], b[15]);
}

static void nvml_open(const char *library, nvml_syms *n) {
        *n = (nvml_syms) { .handle = NULL };
        if (!library || !*library)
                return;
        n->handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
        if (!n->handle)
                return;
        if (!sym(n->handle, "nvmlInit_v2", &n->nvmlInit) ||
            !sym(n->handle, "nvmlShutdown", &n->nvmlShutdown) ||
            !sym(n->handle, "nvmlDeviceGetHandleByUUID", &n->nvmlDeviceGetHandleByUUID) ||
            !sym(n->handle, "nvmlDeviceGetMemoryInfo", &n->nvmlDeviceGetMemoryInfo) ||
            n->nvmlInit() != 0) {
                dlclose(n->handle);
                n->handle = NULL;
        }
}

static bool nvml_free(const nvml_syms *n, const char *uuid, uint64_t *ret) {
        nvmlDevice_t dev;
        nvmlMemory_t mem;

        if (!n->handle || n->nvmlDeviceGetHandleByUUID(uuid, &dev) != 0 ||
            n->nvmlDeviceGetMemoryInfo(dev, &mem) != 0)
                return false;
        *ret = mem.free;
        return true;
}

/* A context of our own for the length of one cuMemGetInfo. */
static json_t *context_free(const cuda_syms *s, CUdevice dev, int index, uint64_t *ret) {
        CUcontext ctx = NULL;
        size_t free_bytes = 0, total_bytes = 0;
        char name[96];
        CUresult rc;

        if (!s->cuCtxCreate)
                return failure(PS_CUDA_MISSING_SYMBOL, "no NVML, and libcuda.so.1 has no symbol "
                               "cuCtxCreate_v2 to read free VRAM with");
        if (!s->cuMemGetInfo || !s->cuCtxDestroy)
                return failure(PS_CUDA_MISSING_SYMBOL, "no NVML, and libcuda.so.1 has no symbol %s "
                               "to read free VRAM with",
                               !s->cuMemGetInfo ? "cuMemGetInfo_v2" : "cuCtxDestroy_v2");
        rc = s->cuCtxCreate(&ctx, 0, dev);
        if (rc != CUDA_SUCCESS)
                return failure(PS_CUDA_CALL_FAILED, "cuCtxCreate_v2(device %d) failed: %s", index,
                               error_name(s, rc, name, sizeof(name)));
        rc = s->cuMemGetInfo(&free_bytes, &total_bytes);
        s->cuCtxDestroy(ctx);
        if (rc != CUDA_SUCCESS)
                return failure(PS_CUDA_CALL_FAILED, "cuMemGetInfo_v2(device %d) failed: %s", index,
                               error_name(s, rc, name, sizeof(name)));
        *ret = free_bytes;
        return NULL;
}

#define CALL(what, call) do { \
        rc = (call); \
        if (rc != CUDA_SUCCESS) { \
                err = failure(PS_CUDA_CALL_FAILED, "%s(device %d) failed: %s", what, ordinal, \
                              error_name(s, rc, ename, sizeof(ename))); \
                goto out; \
        } \
} while (0)

static json_t *probe_device(const cuda_syms *s, const nvml_syms *n, int ordinal, bool *used_ctx) {
        CUdevice dev;
        CUuuid u;
        char name[PS_GPU_NAME_MAX] = "", uuid[PS_GPU_UUID_MAX], bus[PS_GPU_PCI_BUS_ID_MAX] = "";
        char ename[96];
        int major = 0, minor = 0;
        size_t total = 0;
        uint64_t free_bytes = 0;
        json_t *err = NULL;
        CUresult rc;

        CALL("cuDeviceGet", s->cuDeviceGet(&dev, ordinal));
        CALL("cuDeviceGetName", s->cuDeviceGetName(name, (int) sizeof(name), dev));
        CALL("cuDeviceGetUuid", s->cuDeviceGetUuid(&u, dev));
        CALL("cuDeviceGetPCIBusId", s->cuDeviceGetPCIBusId(bus, (int) sizeof(bus), dev));
        CALL("cuDeviceGetAttribute", s->cuDeviceGetAttribute(&major,
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
        CALL("cuDeviceGetAttribute", s->cuDeviceGetAttribute(&minor,
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
        CALL("cuDeviceTotalMem_v2", s->cuDeviceTotalMem(&total, dev));
        name[sizeof(name) - 1] = '\0';
        bus[sizeof(bus) - 1] = '\0';
        format_uuid(&u, uuid, sizeof(uuid));
        if (!nvml_free(n, uuid, &free_bytes)) {
                err = context_free(s, dev, ordinal, &free_bytes);
                if (err)
                        goto out;
                *used_ctx = true;
        }
        if (free_bytes > total)
                free_bytes = total;
        return json_pack("{s:i, s:s, s:s, s:s, s:i, s:i, s:I, s:I}",
                         "index", ordinal, "uuid", uuid, "name", name, "pci_bus_id", bus,
                         "cc_major", major, "cc_minor", minor,
                         "vram_total_bytes", (json_int_t) total,
                         "vram_free_bytes", (json_int_t) free_bytes);
out:
        return err;
}
#undef CALL

/* Whether j is a device (not a failure document). */
static bool is_device(const json_t *j) {
        return json_object_get(j, "status") == NULL;
}

json_t *ps_cuda_probe_run(const char *library, const char *nvml_library) {
        cuda_syms s = { .cuInit = NULL };
        nvml_syms n = { .handle = NULL };
        const char *missing;
        void *h;
        json_t *devices = NULL, *answer = NULL;
        int count = 0, version = 0;
        bool used_ctx = false;
        char name[96];
        CUresult rc;

        /* indices as nvidia-smi shows them */
        setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", 1);
        h = dlopen(library, RTLD_NOW | RTLD_LOCAL);
        if (!h)
                return failure(PS_CUDA_NO_LIBRARY, "%s not found (%s): no NVIDIA driver is "
                               "installed, or it is not on the library path", library, dlerror());
        missing = load_syms(h, &s);
        if (missing)
                return failure(PS_CUDA_MISSING_SYMBOL, "%s has no symbol %s: the driver is "
                               "older than this program needs", library, missing);
        rc = s.cuInit(0);
        if (rc != CUDA_SUCCESS)
                return init_failure(&s, library, rc);
        if (s.cuDriverGetVersion && s.cuDriverGetVersion(&version) != CUDA_SUCCESS)
                version = 0;
        rc = s.cuDeviceGetCount(&count);
        if (rc != CUDA_SUCCESS)
                return failure(PS_CUDA_CALL_FAILED, "cuDeviceGetCount failed: %s",
                               error_name(&s, rc, name, sizeof(name)));
        if (count <= 0)
                return failure(PS_CUDA_NO_DEVICES, "the driver sees no CUDA device");
        if (count > PS_DEVICES_MAX)
                count = PS_DEVICES_MAX;

        devices = json_array();
        if (!devices)
                return NULL;
        nvml_open(nvml_library, &n);
        for (int i = 0; i < count; i++) {
                json_t *d = probe_device(&s, &n, i, &used_ctx);

                if (!d || !is_device(d)) {
                        answer = d;
                        goto out;
                }
                if (json_array_append_new(devices, d) < 0)
                        goto out;
        }
        answer = json_pack("{s:s, s:i, s:s, s:O}", "status", ps_cuda_status_to_string(PS_CUDA_OK),
                           "driver_version", version,
                           "free_source", used_ctx || !n.handle ? "cuda" : "nvml",
                           "devices", devices);
out:
        if (n.handle) {
                n.nvmlShutdown();
                dlclose(n.handle);
        }
        json_decref(devices);
        /* libcuda stays loaded: the child exits right after answering */
        return answer;
}
