/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for the CUDA driver library (libcuda.so.1): the entry points
 * pool-managerd's probe uses, answering from the environment, so that the
 * real dlopen path runs without a GPU. Tests put its directory first in
 * LD_LIBRARY_PATH.
 *
 *   FAKE_CUDA_DEVICES     device count (default 0)
 *   FAKE_CUDA_NAMES       comma-separated names ("Fake GPU <i>")
 *   FAKE_CUDA_TOTAL_MIB   comma-separated total VRAM in MiB (24576)
 *   FAKE_CUDA_FREE_MIB    comma-separated free VRAM in MiB (the total)
 *   FAKE_CUDA_CC          compute capability "8.9"
 *   FAKE_CUDA_INIT_ERROR  CUresult cuInit returns (0)
 *   FAKE_CUDA_HANG        "init": cuInit never returns
 *   FAKE_CUDA_CRASH       "init": cuInit aborts the process
 *   FAKE_CUDA_FILE        a file whose first line overrides FAKE_CUDA_FREE_MIB,
 *                         or says "error N": cuInit returns N (read at
 *                         each cuInit, so a running daemon sees changes)
 *
 * Built without FAKE_CUDA_HAS_TOTAL_MEM it lacks cuDeviceTotalMem_v2: an
 * old or broken driver.
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct { unsigned char bytes[16]; } CUuuid;

#define EXPORT __attribute__((visibility("default")))
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_INVALID_DEVICE 101

static int initialised;
static CUresult init_error;
static char file_free[256];
static int current_ctx = -1;

EXPORT CUresult cuInit(unsigned flags);
EXPORT CUresult cuDriverGetVersion(int *version);
EXPORT CUresult cuGetErrorName(CUresult error, const char **name);
EXPORT CUresult cuDeviceGetCount(int *count);
EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal);
EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev);
EXPORT CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice dev);
EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev);
EXPORT CUresult cuCtxCreate_v2(CUcontext *ctx, unsigned flags, CUdevice dev);
EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx);
EXPORT CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes);

static int env_int(const char *name, int fallback) {
        const char *v = getenv(name);

        return v && *v ? atoi(v) : fallback;
}

static int device_count(void) {
        return env_int("FAKE_CUDA_DEVICES", 0);
}

/* The i-th comma-separated field of a variable, into buf; false if none. */
static int field(const char *list, int i, char *buf, size_t len) {
        const char *p = list;

        if (!p || !*p)
                return 0;
        for (; i > 0; i--) {
                p = strchr(p, ',');
                if (!p)
                        return 0;
                p++;
        }
        snprintf(buf, len, "%.*s", (int) strcspn(p, ","), p);
        return 1;
}

static uint64_t mib_field(const char *list, int i, uint64_t fallback) {
        char buf[32];

        return field(list, i, buf, sizeof(buf)) ? strtoull(buf, NULL, 10) << 20 : fallback;
}

static uint64_t total_bytes(int dev) {
        return mib_field(getenv("FAKE_CUDA_TOTAL_MIB"), dev, 24576ULL << 20);
}

static uint64_t free_bytes(int dev) {
        const char *list = file_free[0] ? file_free : getenv("FAKE_CUDA_FREE_MIB");

        return mib_field(list, dev, total_bytes(dev));
}

static int valid(CUdevice dev) {
        return dev >= 0 && dev < device_count();
}

static void read_file(void) {
        const char *path = getenv("FAKE_CUDA_FILE");
        char line[256] = "";
        FILE *f;

        if (!path || !(f = fopen(path, "r")))
                return;
        if (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, "error ", 6) == 0)
                        init_error = atoi(line + 6);
                else
                        snprintf(file_free, sizeof(file_free), "%s", line);
        }
        fclose(f);
}

CUresult cuInit(unsigned flags) {
        const char *hang = getenv("FAKE_CUDA_HANG"), *crash = getenv("FAKE_CUDA_CRASH");

        (void) flags;
        if (hang && strcmp(hang, "init") == 0)
                for (;;)
                        pause();
        if (crash && strcmp(crash, "init") == 0)
                abort();
        init_error = env_int("FAKE_CUDA_INIT_ERROR", 0);
        read_file();
        if (init_error)
                return init_error;
        initialised = 1;
        return 0;
}

CUresult cuDriverGetVersion(int *version) {
        *version = 12040;
        return 0;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
        static const struct { CUresult code; const char *name; } names[] = {
                { 1, "CUDA_ERROR_INVALID_VALUE" },
                { 2, "CUDA_ERROR_OUT_OF_MEMORY" },
                { 3, "CUDA_ERROR_NOT_INITIALIZED" },
                { 35, "CUDA_ERROR_INSUFFICIENT_DRIVER" },
                { 100, "CUDA_ERROR_NO_DEVICE" },
                { 101, "CUDA_ERROR_INVALID_DEVICE" },
                { 803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH" },
                { 999, "CUDA_ERROR_UNKNOWN" },
        };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (names[i].code == error) {
                        *name = names[i].name;
                        return 0;
                }
        return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceGetCount(int *count) {
        if (!initialised)
                return CUDA_ERROR_NOT_INITIALIZED;
        *count = device_count();
        return 0;
}

CUresult cuDeviceGet(CUdevice *dev, int ordinal) {
        if (!initialised)
                return CUDA_ERROR_NOT_INITIALIZED;
        if (!valid(ordinal))
                return CUDA_ERROR_INVALID_DEVICE;
        *dev = ordinal;
        return 0;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
        char buf[128];

        if (!valid(dev) || len <= 0)
                return CUDA_ERROR_INVALID_VALUE;
        if (!field(getenv("FAKE_CUDA_NAMES"), dev, buf, sizeof(buf)))
                snprintf(buf, sizeof(buf), "Fake GPU %d", dev);
        snprintf(name, (size_t) len, "%s", buf);
        return 0;
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) {
        static const unsigned char base[16] = { 0xfa, 0xce, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78,
                                                0x9a, 0xbc, 0xde, 0xf0, 0x00, 0x00, 0x00, 0x00 };

        if (!valid(dev))
                return CUDA_ERROR_INVALID_DEVICE;
        memcpy(uuid->bytes, base, sizeof(base));
        uuid->bytes[15] = (unsigned char) dev;
        return 0;
}

CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice dev) {
        if (!valid(dev) || len <= 0)
                return CUDA_ERROR_INVALID_VALUE;
        snprintf(id, (size_t) len, "0000:%02x:00.0", dev + 1);
        return 0;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev) {
        const char *cc = getenv("FAKE_CUDA_CC");
        int major = 8, minor = 9;

        if (!valid(dev))
                return CUDA_ERROR_INVALID_DEVICE;
        if (cc && sscanf(cc, "%d.%d", &major, &minor) != 2)
                major = 8, minor = 9;
        if (attribute == 75)
                *value = major;
        else if (attribute == 76)
                *value = minor;
        else
                return CUDA_ERROR_INVALID_VALUE;
        return 0;
}

#ifdef FAKE_CUDA_HAS_TOTAL_MEM
EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev);

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
        if (!valid(dev))
                return CUDA_ERROR_INVALID_DEVICE;
        *bytes = (size_t) total_bytes(dev);
        return 0;
}
#endif

CUresult cuCtxCreate_v2(CUcontext *ctx, unsigned flags, CUdevice dev) {
        (void) flags;
        if (!valid(dev))
                return CUDA_ERROR_INVALID_DEVICE;
        current_ctx = dev;
        *ctx = (CUcontext) (uintptr_t) (dev + 1);
        return 0;
}

CUresult cuCtxDestroy_v2(CUcontext ctx) {
        (void) ctx;
        current_ctx = -1;
        return 0;
}

CUresult cuMemGetInfo_v2(size_t *free_out, size_t *total_out) {
        if (current_ctx < 0)
                return CUDA_ERROR_INVALID_VALUE;
        *free_out = (size_t) free_bytes(current_ctx);
        *total_out = (size_t) total_bytes(current_ctx);
        return 0;
}
