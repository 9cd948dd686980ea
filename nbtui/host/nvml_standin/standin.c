/* A stand-in libnvidia-ml.so.1: NVML's C ABI answered from a scenario file, for tests and the demo.
 *
 * Compiled against the real nvml.h (PyPI: nvidia-nvml-dev), so every exported function has the
 * driver's exact signature. The scenario (path in $NBTUI_NVML_STANDIN) is a line format:
 *
 *   layout v1|v2|v3|v3-v2|v3-v1      which process-info layout the process-list functions fill
 *   registry DIR                     where processes register the memory they hold (file DIR/<pid>)
 *   gpu IDX UUID TOTAL RESERVED UTIL NAME...     a GPU (bytes; RESERVED: used by no process)
 *   mig IDX GI CI UUID TOTAL NAME...             a MIG instance of GPU IDX (turns MIG mode on)
 *   proc GPU PID BYTES SM c|g|cg                 a process NVML lists whether or not it lives here
 *                                                (GPU is "0" or "0/GI/CI"; SM -1: no sample)
 *   sample GPU PID SM AGE_US                     a past utilisation sample (AGE_US before nvmlInit)
 *   error FUNCTION GPU|* ERROR [TIMES]           FUNCTION (no _vN suffix) answers ERROR (TIMES calls,
 *                                                default all); INSUFFICIENT_SIZE on a process list:
 *                                                the list grew by two since the count call
 *
 * A registration file DIR/<pid> holds "start STARTTIME" then lines "GPU BYTES SM c|g|cg"; it counts
 * while that PID lives with that start time and is no zombie, as a driver frees a dead process's memory.
 *
 * Process-list layouts (the driver's, which changed without a version bump):
 *   v1: only the unversioned function, 16-byte nvmlProcessInfo_v1_t
 *   v2: adds _v2 (24-byte nvmlProcessInfo_v2_t)
 *   v3: adds _v3 filling a 32-byte struct (driver 535.43; later headers dropped it)
 *   v3-v2: _v3 fills the 24-byte v2 struct (drivers 510-535.40 and >= 535.98; today's header)
 *   v3-v1: _v3 fills 16-byte v1 records (nvitop #226)
 * A function a layout lacks answers NVML_ERROR_FUNCTION_NOT_FOUND, as pynvml does for a missing symbol.
 */
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#include <nvml.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>

/* Driver 535.43's process info: v2 plus the confidential-computing memory. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
    unsigned long long usedGpuCcProtectedMemory;
} standin_info_v3_t;

#define MAX_GPUS 64
#define MAX_MIGS 8
#define MAX_ERRORS 64
#define MAX_SAMPLES 256
#define NO_ID 0xFFFFFFFFu

struct nvmlDevice_st {
    int used;
    int index;                      /* the GPU's index (a MIG instance: its parent's) */
    struct nvmlDevice_st *parent;   /* NULL for a GPU */
    unsigned int gi, ci;
    char uuid[96];
    char name[96];
    unsigned long long total, reserved;
    int util;
    int nmig;
    struct nvmlDevice_st *migs[MAX_MIGS];
};

typedef struct {
    struct nvmlDevice_st *dev;
    unsigned int pid;
    unsigned long long bytes;
    int sm;
    int kinds; /* 1 compute, 2 graphics */
} proc_t;

typedef struct { char fn[80]; int gpu; nvmlReturn_t err; int times; } inject_t;
typedef struct { struct nvmlDevice_st *dev; unsigned int pid; unsigned int sm; unsigned long long ts; } sample_t;

static struct nvmlDevice_st gpus[MAX_GPUS];
static struct nvmlDevice_st migs[MAX_GPUS * MAX_MIGS];
static int ngpus, nmigs_total, loaded;
static char layout[16] = "v3-v2";
static char registry[1024];
static proc_t *statics;
static int nstatics, cstatics;
static inject_t injects[MAX_ERRORS];
static int ninjects;
static sample_t samples[MAX_SAMPLES];
static int nsamples;

static unsigned long long now_us(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
}

static nvmlReturn_t error_named(const char *s) {
    static const struct { const char *name; nvmlReturn_t v; } t[] = {
        {"UNINITIALIZED", NVML_ERROR_UNINITIALIZED}, {"INVALID_ARGUMENT", NVML_ERROR_INVALID_ARGUMENT},
        {"NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED}, {"NO_PERMISSION", NVML_ERROR_NO_PERMISSION},
        {"NOT_FOUND", NVML_ERROR_NOT_FOUND}, {"INSUFFICIENT_SIZE", NVML_ERROR_INSUFFICIENT_SIZE},
        {"DRIVER_NOT_LOADED", NVML_ERROR_DRIVER_NOT_LOADED}, {"TIMEOUT", NVML_ERROR_TIMEOUT},
        {"GPU_IS_LOST", NVML_ERROR_GPU_IS_LOST}, {"FUNCTION_NOT_FOUND", NVML_ERROR_FUNCTION_NOT_FOUND},
        {"LIB_RM_VERSION_MISMATCH", NVML_ERROR_LIB_RM_VERSION_MISMATCH}, {"UNKNOWN", NVML_ERROR_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].name) == 0) return t[i].v;
    return NVML_ERROR_UNKNOWN;
}

/* "0" or "0/1/0" -> the device, NULL if none. */
static struct nvmlDevice_st *device_named(const char *s) {
    unsigned int idx, gi, ci;
    if (sscanf(s, "%u/%u/%u", &idx, &gi, &ci) == 3) {
        if (idx >= (unsigned)ngpus) return NULL;
        for (int j = 0; j < gpus[idx].nmig; j++)
            if (gpus[idx].migs[j]->gi == gi && gpus[idx].migs[j]->ci == ci) return gpus[idx].migs[j];
        return NULL;
    }
    if (sscanf(s, "%u", &idx) == 1 && idx < (unsigned)ngpus && gpus[idx].used) return &gpus[idx];
    return NULL;
}

static int kinds_of(const char *s) {
    int k = 0;
    if (strchr(s, 'c')) k |= 1;
    if (strchr(s, 'g')) k |= 2;
    return k ? k : 1;
}

static const char *rest_after(const char *line, int fields) {
    const char *p = line;
    for (int i = 0; i < fields; i++) {
        while (*p && isspace((unsigned char)*p)) p++;
        while (*p && !isspace((unsigned char)*p)) p++;
    }
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

static void copy_name(char *dst, size_t n, const char *src) {
    snprintf(dst, n, "%s", src);
    size_t len = strlen(dst);
    while (len && (dst[len - 1] == '\n' || dst[len - 1] == '\r')) dst[--len] = 0;
}

static void add_static(struct nvmlDevice_st *d, unsigned pid, unsigned long long bytes, int sm, int kinds) {
    if (nstatics == cstatics) {
        cstatics = cstatics ? cstatics * 2 : 64;
        statics = realloc(statics, sizeof(proc_t) * (size_t)cstatics);
        if (!statics) { nstatics = cstatics = 0; return; }
    }
    statics[nstatics++] = (proc_t){d, pid, bytes, sm, kinds};
}

static int load(void) {
    const char *path = getenv("NBTUI_NVML_STANDIN");
    if (!path) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024], a[128], b[128], c[128], d[128];
    unsigned long long t0 = now_us();
    while (fgets(line, sizeof line, f)) {
        unsigned idx, gi, ci, pid, times;
        unsigned long long total, reserved, bytes, age;
        int util, sm;
        if (line[0] == '#') continue;
        if (sscanf(line, "layout %15s", layout) == 1) continue;
        if (sscanf(line, "registry %1023[^\n]", registry) == 1) continue;
        if (sscanf(line, "gpu %u %95s %llu %llu %d", &idx, a, &total, &reserved, &util) == 5) {
            if (idx >= MAX_GPUS) continue;
            struct nvmlDevice_st *g = &gpus[idx];
            memset(g, 0, sizeof *g);
            g->used = 1; g->index = (int)idx; g->gi = g->ci = NO_ID;
            snprintf(g->uuid, sizeof g->uuid, "%s", a);
            copy_name(g->name, sizeof g->name, rest_after(line, 6));
            g->total = total; g->reserved = reserved; g->util = util;
            if ((int)idx + 1 > ngpus) ngpus = (int)idx + 1;
            continue;
        }
        if (sscanf(line, "mig %u %u %u %95s %llu", &idx, &gi, &ci, a, &total) == 5) {
            if (idx >= (unsigned)ngpus || !gpus[idx].used || gpus[idx].nmig >= MAX_MIGS) continue;
            struct nvmlDevice_st *m = &migs[nmigs_total++];
            memset(m, 0, sizeof *m);
            m->used = 1; m->index = (int)idx; m->parent = &gpus[idx]; m->gi = gi; m->ci = ci;
            snprintf(m->uuid, sizeof m->uuid, "%s", a);
            copy_name(m->name, sizeof m->name, rest_after(line, 6));
            m->total = total; m->util = -1;
            gpus[idx].migs[gpus[idx].nmig++] = m;
            continue;
        }
        if (sscanf(line, "proc %127s %u %llu %d %127s", a, &pid, &bytes, &sm, b) == 5) {
            struct nvmlDevice_st *dv = device_named(a);
            if (dv) add_static(dv, pid, bytes, sm, kinds_of(b));
            continue;
        }
        if (sscanf(line, "sample %127s %u %d %llu", a, &pid, &sm, &age) == 4) {
            struct nvmlDevice_st *dv = device_named(a);
            if (dv && nsamples < MAX_SAMPLES) samples[nsamples++] = (sample_t){dv, pid, (unsigned)sm, t0 - age};
            continue;
        }
        int n = sscanf(line, "error %79s %127s %127s %u", c, a, d, &times);
        if (n >= 3 && ninjects < MAX_ERRORS) {
            inject_t *e = &injects[ninjects++];
            snprintf(e->fn, sizeof e->fn, "%s", c);
            e->gpu = strcmp(a, "*") == 0 ? -1 : atoi(a);
            e->err = error_named(d);
            e->times = n == 4 ? (int)times : -1;
        }
    }
    fclose(f);
    return 1;
}

/* The error injected for this call, or NVML_SUCCESS. */
static nvmlReturn_t injected(const char *fn, nvmlDevice_t dev) {
    for (int i = 0; i < ninjects; i++) {
        inject_t *e = &injects[i];
        if (strcmp(e->fn, fn) != 0 || e->times == 0) continue;
        if (e->gpu >= 0 && (!dev || dev->index != e->gpu)) continue;
        if (e->times > 0) e->times--;
        return e->err;
    }
    return NVML_SUCCESS;
}

#define CHECK(fn, dev) do { \
    if (!loaded) return NVML_ERROR_UNINITIALIZED; \
    if (!(dev) || !(dev)->used) return NVML_ERROR_INVALID_ARGUMENT; \
    nvmlReturn_t e_ = injected(fn, dev); if (e_ != NVML_SUCCESS) return e_; } while (0)

/* Field 22 of /proc/PID/stat (start time in ticks), 0 when the process is gone or a zombie. */
static unsigned long long start_time(unsigned int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    char state;
    unsigned long long st = 0;
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
       cutime cstime priority nice threads itrealvalue starttime(22) */
    if (sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &state, &st) != 2) return 0;
    if (state == 'Z' || state == 'X') return 0;
    return st;
}

static int alive(unsigned int pid, unsigned long long start) {
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return 0;
    unsigned long long st = start_time(pid);
    return st != 0 && (start == 0 || st == start);
}

/* Every process NVML would list now: the scenario's, then the live registered ones. */
static proc_t *current(int *count) {
    int cap = nstatics + 64, n = 0;
    proc_t *out = malloc(sizeof(proc_t) * (size_t)cap);
    if (!out) { *count = 0; return NULL; }
    memcpy(out, statics, sizeof(proc_t) * (size_t)nstatics);
    n = nstatics;
    DIR *dir = registry[0] ? opendir(registry) : NULL;
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        const char *s = de->d_name;
        if (!*s) continue;
        int digits = 1;
        for (const char *q = s; *q; q++) if (!isdigit((unsigned char)*q)) digits = 0;
        if (!digits) continue;
        unsigned int pid = (unsigned)strtoul(s, NULL, 10);
        char path[1400], line[256], g[128], k[16];
        snprintf(path, sizeof path, "%s/%s", registry, s);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned long long start = 0, bytes;
        int sm, ok = 0;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "start %llu", &start) == 1) { ok = alive(pid, start); continue; }
            if (!ok) break;
            if (sscanf(line, "%127s %llu %d %15s", g, &bytes, &sm, k) != 4) continue;
            struct nvmlDevice_st *dv = device_named(g);
            if (!dv) continue;
            if (n == cap) {
                cap *= 2;
                proc_t *bigger = realloc(out, sizeof(proc_t) * (size_t)cap);
                if (!bigger) break;
                out = bigger;
            }
            out[n++] = (proc_t){dv, pid, bytes, sm, kinds_of(k)};
        }
        fclose(f);
    }
    if (dir) closedir(dir);
    *count = n;
    return out;
}

static int on(const proc_t *p, nvmlDevice_t dev) {
    return p->dev == dev || (dev->parent == NULL && p->dev->parent == dev);
}

static unsigned long long used_on(nvmlDevice_t dev) {
    int n;
    proc_t *ps = current(&n);
    unsigned long long used = dev->reserved;
    for (int i = 0; i < n; i++) if (on(&ps[i], dev)) used += ps[i].bytes;
    free(ps);
    return used;
}

/* The process list in the layout of `stride` bytes (16, 24 or 32). */
static nvmlReturn_t fill(const char *fn, nvmlDevice_t dev, int kind, unsigned int *infoCount, void *infos,
                         size_t stride) {
    if (!loaded) return NVML_ERROR_UNINITIALIZED;
    if (!dev || !dev->used || !infoCount) return NVML_ERROR_INVALID_ARGUMENT;
    int n;
    proc_t *ps = current(&n);
    unsigned int want = 0;
    for (int i = 0; i < n; i++) if ((ps[i].kinds & kind) && on(&ps[i], dev)) want++;
    nvmlReturn_t e = injected(fn, dev);
    if (e == NVML_ERROR_INSUFFICIENT_SIZE) {
        /* The list grew between the caller's count call and this one: two more than it asked room for. */
        *infoCount = (*infoCount > want ? *infoCount : want) + 2;
        free(ps);
        return e;
    }
    if (e != NVML_SUCCESS) { free(ps); return e; }
    if (*infoCount < want || (want && !infos)) {
        *infoCount = want;
        free(ps);
        return want ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    unsigned char *out = infos;
    unsigned int j = 0;
    for (int i = 0; i < n; i++) {
        proc_t *p = &ps[i];
        if (!((p->kinds & kind) && on(p, dev))) continue;
        unsigned char *at = out + (size_t)j++ * stride;
        unsigned int gi = p->dev->parent ? p->dev->gi : NO_ID, ci = p->dev->parent ? p->dev->ci : NO_ID;
        if (stride == sizeof(nvmlProcessInfo_v1_t)) {
            nvmlProcessInfo_v1_t v = {.pid = p->pid, .usedGpuMemory = p->bytes};
            memcpy(at, &v, sizeof v);
        } else if (stride == sizeof(nvmlProcessInfo_v2_t)) {
            nvmlProcessInfo_v2_t v = {.pid = p->pid, .usedGpuMemory = p->bytes, .gpuInstanceId = gi,
                                      .computeInstanceId = ci};
            memcpy(at, &v, sizeof v);
        } else {
            standin_info_v3_t v = {.pid = p->pid, .usedGpuMemory = p->bytes, .gpuInstanceId = gi,
                                   .computeInstanceId = ci, .usedGpuCcProtectedMemory = 0};
            memcpy(at, &v, sizeof v);
        }
    }
    *infoCount = want;
    free(ps);
    return NVML_SUCCESS;
}

/* version: 1, 2 or 3 (the function's suffix) -> the stride this driver fills, 0: no such function. */
static size_t stride_of(int version) {
    if (version == 1) return sizeof(nvmlProcessInfo_v1_t);
    if (version == 2) return strcmp(layout, "v1") == 0 ? 0 : sizeof(nvmlProcessInfo_v2_t);
    if (strcmp(layout, "v3") == 0) return sizeof(standin_info_v3_t);
    if (strcmp(layout, "v3-v2") == 0) return sizeof(nvmlProcessInfo_v2_t);
    if (strcmp(layout, "v3-v1") == 0) return sizeof(nvmlProcessInfo_v1_t);
    return 0;
}

#define PROCESS_LIST(NAME, SUFFIX, VERSION, TYPE, KIND) \
    nvmlReturn_t DECLDIR NAME##SUFFIX(nvmlDevice_t device, unsigned int *infoCount, TYPE *infos) { \
        size_t s = stride_of(VERSION); \
        if (!s) return NVML_ERROR_FUNCTION_NOT_FOUND; \
        return fill(#NAME, device, KIND, infoCount, infos, s); \
    }

PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses, , 1, nvmlProcessInfo_v1_t, 1)
PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses, _v2, 2, nvmlProcessInfo_v2_t, 1)
PROCESS_LIST(nvmlDeviceGetComputeRunningProcesses, _v3, 3, nvmlProcessInfo_t, 1)
PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses, , 1, nvmlProcessInfo_v1_t, 2)
PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses, _v2, 2, nvmlProcessInfo_v2_t, 2)
PROCESS_LIST(nvmlDeviceGetGraphicsRunningProcesses, _v3, 3, nvmlProcessInfo_t, 2)
PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses, , 1, nvmlProcessInfo_v1_t, 0)
PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses, _v2, 2, nvmlProcessInfo_v2_t, 0)
PROCESS_LIST(nvmlDeviceGetMPSComputeRunningProcesses, _v3, 3, nvmlProcessInfo_t, 0)

/* -- init, system -------------------------------------------------------------------------- */

static nvmlReturn_t init(void) {
    if (!loaded) {
        if (!load()) return NVML_ERROR_DRIVER_NOT_LOADED;
        loaded = 1;
    }
    nvmlReturn_t e = injected("nvmlInit", NULL);
    if (e != NVML_SUCCESS) loaded = 0;
    return e;
}

nvmlReturn_t DECLDIR nvmlInit(void) { return init(); }
nvmlReturn_t DECLDIR nvmlInit_v2(void) { return init(); }
nvmlReturn_t DECLDIR nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }
nvmlReturn_t DECLDIR nvmlShutdown(void) { return NVML_SUCCESS; }

const DECLDIR char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    default: return "Unknown Error";
    }
}

static nvmlReturn_t text(const char *s, char *out, unsigned int length) {
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(s) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(out, s, strlen(s) + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    return text("999.0.0-standin", version, length);
}
nvmlReturn_t DECLDIR nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    return text("13.999.0-standin", version, length);
}
nvmlReturn_t DECLDIR nvmlSystemGetCudaDriverVersion(int *v) { if (!v) return NVML_ERROR_INVALID_ARGUMENT; *v = 13000; return NVML_SUCCESS; }
nvmlReturn_t DECLDIR nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

/* -- devices ------------------------------------------------------------------------------- */

nvmlReturn_t DECLDIR nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    if (!loaded) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t e = injected("nvmlDeviceGetCount", NULL);
    if (e != NVML_SUCCESS) return e;
    if (!deviceCount) return NVML_ERROR_INVALID_ARGUMENT;
    *deviceCount = (unsigned)ngpus;
    return NVML_SUCCESS;
}
nvmlReturn_t DECLDIR nvmlDeviceGetCount(unsigned int *deviceCount) { return nvmlDeviceGetCount_v2(deviceCount); }

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!loaded) return NVML_ERROR_UNINITIALIZED;
    if (index >= (unsigned)ngpus || !device || !gpus[index].used) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t e = injected("nvmlDeviceGetHandleByIndex", &gpus[index]);
    if (e != NVML_SUCCESS) return e;
    *device = &gpus[index];
    return NVML_SUCCESS;
}
nvmlReturn_t DECLDIR nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

nvmlReturn_t DECLDIR nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    if (!loaded) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < ngpus; i++) if (gpus[i].used && strcmp(gpus[i].uuid, uuid) == 0) { *device = &gpus[i]; return NVML_SUCCESS; }
    for (int i = 0; i < nmigs_total; i++) if (strcmp(migs[i].uuid, uuid) == 0) { *device = &migs[i]; return NVML_SUCCESS; }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t DECLDIR nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index) {
    CHECK("nvmlDeviceGetIndex", device);
    if (!index) return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned)device->index;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    CHECK("nvmlDeviceGetUUID", device);
    return text(device->uuid, uuid, length);
}

nvmlReturn_t DECLDIR nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    CHECK("nvmlDeviceGetName", device);
    return text(device->name, name, length);
}

nvmlReturn_t DECLDIR nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    CHECK("nvmlDeviceGetMemoryInfo", device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long used = used_on(device);
    memory->total = device->total;
    memory->used = used;
    memory->free = used > device->total ? 0 : device->total - used;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
    CHECK("nvmlDeviceGetMemoryInfo", device);
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long used = used_on(device);
    memory->total = device->total;
    memory->reserved = device->reserved;
    memory->used = used - device->reserved;
    memory->free = used > device->total ? 0 : device->total - used;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    CHECK("nvmlDeviceGetUtilizationRates", device);
    if (!utilization) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->parent || device->nmig) return NVML_ERROR_NOT_SUPPORTED; /* MIG: not per instance */
    /* The scenario's base figure plus what the live processes on it use. */
    int n, util = device->util < 0 ? 0 : device->util;
    proc_t *ps = current(&n);
    for (int i = 0; i < n; i++) if (ps[i].dev == device && ps[i].sm > 0) util += ps[i].sm;
    free(ps);
    utilization->gpu = (unsigned)(util > 100 ? 100 : util);
    utilization->memory = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization,
                                                     unsigned int *processSamplesCount,
                                                     unsigned long long lastSeenTimeStamp) {
    CHECK("nvmlDeviceGetProcessUtilization", device);
    if (!processSamplesCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->parent || device->nmig) return NVML_ERROR_NOT_SUPPORTED;
    int n;
    proc_t *ps = current(&n);
    unsigned long long t = now_us();
    unsigned int want = 0;
    for (int i = 0; i < nsamples; i++) if (samples[i].dev == device && samples[i].ts > lastSeenTimeStamp) want++;
    for (int i = 0; i < n; i++) if (ps[i].dev == device && ps[i].sm > 0 && t > lastSeenTimeStamp) want++;
    if (want == 0) { free(ps); return NVML_ERROR_NOT_FOUND; }
    if (!utilization || *processSamplesCount < want) {
        *processSamplesCount = want;
        free(ps);
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int j = 0;
    for (int i = 0; i < nsamples; i++)
        if (samples[i].dev == device && samples[i].ts > lastSeenTimeStamp)
            utilization[j++] = (nvmlProcessUtilizationSample_t){.pid = samples[i].pid, .timeStamp = samples[i].ts,
                                                                .smUtil = samples[i].sm};
    for (int i = 0; i < n; i++)
        if (ps[i].dev == device && ps[i].sm > 0 && t > lastSeenTimeStamp)
            utilization[j++] = (nvmlProcessUtilizationSample_t){.pid = ps[i].pid, .timeStamp = t,
                                                                .smUtil = (unsigned)ps[i].sm};
    *processSamplesCount = j;
    free(ps);
    return NVML_SUCCESS;
}

/* -- MIG ----------------------------------------------------------------------------------- */

nvmlReturn_t DECLDIR nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode) {
    CHECK("nvmlDeviceGetMigMode", device);
    if (!currentMode || !pendingMode) return NVML_ERROR_INVALID_ARGUMENT;
    if (device->parent) return NVML_ERROR_NOT_SUPPORTED;
    *currentMode = *pendingMode = device->nmig ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    CHECK("nvmlDeviceGetMaxMigDeviceCount", device);
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = device->nmig ? 7 : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice) {
    CHECK("nvmlDeviceGetMigDeviceHandleByIndex", device);
    if (!migDevice) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= (unsigned)device->nmig) return NVML_ERROR_NOT_FOUND;
    *migDevice = device->migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice) {
    CHECK("nvmlDeviceIsMigDeviceHandle", device);
    if (!isMigDevice) return NVML_ERROR_INVALID_ARGUMENT;
    *isMigDevice = device->parent != NULL;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device) {
    CHECK("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice);
    if (!device || !migDevice->parent) return NVML_ERROR_INVALID_ARGUMENT;
    *device = migDevice->parent;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    CHECK("nvmlDeviceGetGpuInstanceId", device);
    if (!id || !device->parent) return NVML_ERROR_INVALID_ARGUMENT;
    *id = device->gi;
    return NVML_SUCCESS;
}

nvmlReturn_t DECLDIR nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id) {
    CHECK("nvmlDeviceGetComputeInstanceId", device);
    if (!id || !device->parent) return NVML_ERROR_INVALID_ARGUMENT;
    *id = device->ci;
    return NVML_SUCCESS;
}
