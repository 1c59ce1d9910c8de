#include "cxdp.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tern_xdp_map_fd(unsigned ifindex, const char *name) {
    __u32 prog_id = 0;
    int rc = bpf_xdp_query_id((int)ifindex, 0, &prog_id);
    if (rc < 0) return rc;
    if (prog_id == 0) return -ENOENT;
    int prog = bpf_prog_get_fd_by_id(prog_id);
    if (prog < 0) return -errno;
    __u32 ids[64];
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    info.nr_map_ids = 64;
    info.map_ids = (__u64)(unsigned long)ids;
    __u32 length = sizeof(info);
    rc = bpf_obj_get_info_by_fd(prog, &info, &length);
    close(prog);
    if (rc < 0) return -errno;
    __u32 maps = info.nr_map_ids < 64 ? info.nr_map_ids : 64;
    for (__u32 i = 0; i < maps; i++) {
        int fd = bpf_map_get_fd_by_id(ids[i]);
        if (fd < 0) continue;
        struct bpf_map_info map;
        memset(&map, 0, sizeof(map));
        __u32 map_length = sizeof(map);
        if (bpf_obj_get_info_by_fd(fd, &map, &map_length) == 0 && strncmp(map.name, name, sizeof(map.name)) == 0) return fd;
        close(fd);
    }
    return -ENOENT;
}

int tern_xdp_attached(unsigned ifindex, uint32_t *id, char name[16]) {
    __u32 prog_id = 0;
    name[0] = 0;
    int rc = bpf_xdp_query_id((int)ifindex, 0, &prog_id);
    *id = prog_id;
    if (rc < 0 || prog_id == 0) return rc < 0 ? rc : 0;
    int prog = bpf_prog_get_fd_by_id(prog_id);
    if (prog < 0) return -errno;
    struct bpf_prog_info info;
    memset(&info, 0, sizeof(info));
    __u32 length = sizeof(info);
    rc = bpf_obj_get_info_by_fd(prog, &info, &length);
    close(prog);
    if (rc < 0) return -errno;
    memcpy(name, info.name, 16);
    name[15] = 0;
    return 0;
}

int tern_xdp_detach(unsigned ifindex) { return bpf_xdp_detach((int)ifindex, 0, NULL); }

int tern_xdp_detach_any(unsigned ifindex) {
    LIBBPF_OPTS(bpf_xdp_query_opts, query);
    int rc = bpf_xdp_query((int)ifindex, 0, &query);
    if (rc < 0) return rc;
    __u32 mode = query.attach_mode == XDP_ATTACHED_SKB ? XDP_FLAGS_SKB_MODE
        : query.attach_mode == XDP_ATTACHED_DRV        ? XDP_FLAGS_DRV_MODE
        : query.attach_mode == XDP_ATTACHED_HW         ? XDP_FLAGS_HW_MODE
                                                       : 0;
    if (query.attach_mode == XDP_ATTACHED_NONE) return 0;
    return bpf_xdp_detach((int)ifindex, mode, NULL);
}

int tern_xdp_attach(void *object, const char *name, unsigned ifindex, uint32_t replace_id, int *generic) {
    struct bpf_program *program = bpf_object__find_program_by_name((struct bpf_object *)object, name);
    if (!program) return -ENOENT;
    int fd = bpf_program__fd(program);
    LIBBPF_OPTS(bpf_xdp_attach_opts, options);
    __u32 flags = 0;
    if (replace_id) {
        int old = bpf_prog_get_fd_by_id(replace_id);
        if (old < 0) return -errno;
        options.old_prog_fd = old;
        flags |= XDP_FLAGS_REPLACE;
    } else {
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
    }
    *generic = 0;
    int rc = bpf_xdp_attach((int)ifindex, fd, flags | XDP_FLAGS_DRV_MODE, &options);
    if (rc < 0) {
        *generic = 1;
        rc = bpf_xdp_attach((int)ifindex, fd, flags | XDP_FLAGS_SKB_MODE, &options);
    }
    if (options.old_prog_fd > 0) close(options.old_prog_fd);
    return rc;
}

void *tern_bpf_object_open_load(const char *path, int *error) {
    struct bpf_object *object = bpf_object__open_file(path, NULL);
    long rc = libbpf_get_error(object);
    if (!object || rc) {
        *error = rc ? (int)rc : -ENOENT;
        return NULL;
    }
    rc = bpf_object__load(object);
    if (rc < 0) {
        *error = (int)rc;
        bpf_object__close(object);
        return NULL;
    }
    return object;
}

int tern_bpf_map_update(int fd, const void *key, const void *value) {
    return bpf_map_update_elem(fd, key, value, BPF_ANY) < 0 ? -errno : 0;
}

int tern_bpf_map_delete(int fd, const void *key) { return bpf_map_delete_elem(fd, key) < 0 ? -errno : 0; }

int tern_bpf_map_next_key(int fd, const void *key, void *next) {
    return bpf_map_get_next_key(fd, key, next) < 0 ? -errno : 0;
}

int64_t tern_bpf_percpu_sum(int fd, uint32_t index) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) return cpus < 0 ? cpus : -EINVAL;
    __u64 *values = calloc((size_t)cpus, sizeof(__u64));
    if (!values) return -ENOMEM;
    int64_t sum = 0;
    if (bpf_map_lookup_elem(fd, &index, values) < 0) {
        sum = -errno;
    } else {
        for (int c = 0; c < cpus; c++) sum += (int64_t)values[c];
    }
    free(values);
    return sum;
}

void *tern_bpf_object_load(const char *path, int *prog_fd) {
    struct bpf_object *object = bpf_object__open_file(path, NULL);
    if (!object || libbpf_get_error(object)) return NULL;
    if (bpf_object__load(object) < 0) {
        bpf_object__close(object);
        return NULL;
    }
    struct bpf_program *program = bpf_object__next_program(object, NULL);
    *prog_fd = program ? bpf_program__fd(program) : -1;
    return object;
}

int tern_bpf_object_map_fd(void *object, const char *name) {
    return bpf_object__find_map_fd_by_name((struct bpf_object *)object, name);
}

void tern_bpf_object_close(void *object) { bpf_object__close((struct bpf_object *)object); }

int tern_bpf_test_run(int prog_fd, const void *frame, uint32_t length, uint32_t *verdict) {
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame, .data_size_in = length, .repeat = 1);
    if (bpf_prog_test_run_opts(prog_fd, &options) < 0) return -errno;
    *verdict = options.retval;
    return 0;
}

int tern_bpf_test_run_out(
    int prog_fd, const void *frame, uint32_t length, void *out, uint32_t capacity, uint32_t *out_length, uint32_t *verdict) {
    LIBBPF_OPTS(bpf_test_run_opts, options, .data_in = frame, .data_size_in = length, .data_out = out,
                .data_size_out = capacity, .repeat = 1);
    if (bpf_prog_test_run_opts(prog_fd, &options) < 0) return -errno;
    *verdict = options.retval;
    *out_length = options.data_size_out;
    return 0;
}

void tern_close_fd(int fd) {
    if (fd >= 0) close(fd);
}
