/* Private: tile geometry, the token -> scale-group maps and the V^T storage map.
 *
 * One definition, used by the CPU specification, the CUDA quantization kernels and the tests,
 * so the three can never disagree. Plain C with host/device qualifiers under nvcc. */
#ifndef SAGE_GEOMETRY_H
#define SAGE_GEOMETRY_H

#include "sageattn.h"

#include <stdint.h>

#ifdef __CUDACC__
#define SAGE_HD __host__ __device__ __forceinline__
#else
#define SAGE_HD static inline
#endif

/* The tiles a kernel works in. Q rows of a CTA tile are cut in 16-row slabs (the M of one
 * mma/wgmma fragment); slab s of a tile belongs to warp s % warps_q. For mma.sync with one
 * 16-row slab per warp that is warp s; for a wgmma warpgroup owning two m64 tiles (128 rows),
 * warps_q = 4 and warp w owns slabs w and w + 4 (rows 16w.. and 64+16w..). */
typedef struct sage_geometry {
    int cta_q;      /* query rows per CTA tile: the Q block of per-block groups and smooth Q */
    int cta_k;      /* keys per KV tile: the step of the online softmax */
    int warps_q;    /* warps sharing a Q tile's rows (see above) */
    int k_block;    /* keys per K scale block, dividing cta_k; 0 = cta_k. A thread then
                       dequantizes its columns of one KV tile with cta_k / k_block products
                       qs*ks instead of one: free, and 64-key blocks keep the INT8 QK^T error
                       of D = 128 inside the budget where 128-key blocks sit on its edge
                       (docs/algorithm.md, "Accuracy"). */
} sage_geometry;

/* The Hopper kernels' geometries (src/cuda/sm90): 128-row CTAs whose 8 consumer warps (two
 * warpgroups) own one 16-row slab each, 128-key KV tiles and K scale blocks; and 64-row CTAs of
 * one warpgroup (4 warps).
 * Defined here so that the CPU tests hold the specification to the accuracy budgets in these
 * geometries as well. */
#define SAGE_SM90_GEOMETRY {128, 128, 8, 0}
#define SAGE_SM90_Q64_GEOMETRY {64, 128, 4, 0}

/* Keys per K scale block of a geometry. */
SAGE_HD int64_t sage_k_block(sage_geometry g) { return g.k_block > 0 ? g.k_block : g.cta_k; }

/* Number of Q scale groups per head for nq rows. */
SAGE_HD int64_t sage_q_group_count(sage_geometry g, sage_qk_groups gran, int64_t nq) {
    int64_t tiles = (nq + g.cta_q - 1) / g.cta_q;
    switch (gran) {
    case SAGE_QK_PER_WARP: return tiles * g.warps_q;
    case SAGE_QK_PER_THREAD: return tiles * g.warps_q * 8;
    default: return tiles;
    }
}

/* Q scale group of query row `row` (within one head).
 * per-thread: a thread's accumulator rows are g and g+8 of each 16-row slab it owns, so the
 * group is (tile, warp, row % 8). */
SAGE_HD int64_t sage_q_group(sage_geometry g, sage_qk_groups gran, int64_t row) {
    int64_t tile = row / g.cta_q;
    int64_t warp = ((row % g.cta_q) / 16) % g.warps_q;
    switch (gran) {
    case SAGE_QK_PER_WARP: return tile * g.warps_q + warp;
    case SAGE_QK_PER_THREAD: return (tile * g.warps_q + warp) * 8 + row % 8;
    default: return tile;
    }
}

/* Number of K scale groups per head for nk tokens. */
SAGE_HD int64_t sage_k_group_count(sage_geometry g, sage_qk_groups gran, int64_t nk) {
    int64_t blocks = (nk + sage_k_block(g) - 1) / sage_k_block(g);
    return gran == SAGE_QK_PER_THREAD ? blocks * 4 : blocks;
}

/* K scale group of key token `tok` (within one head). Every warp sees the whole KV tile, so
 * per-warp is per-block for K. per-thread: the thread with quad index q holds the columns with
 * (tok % 8) / 2 == q in every n8 block, so the group is (block, (tok % 8) / 2). */
SAGE_HD int64_t sage_k_group(sage_geometry g, sage_qk_groups gran, int64_t tok) {
    int64_t block = tok / sage_k_block(g);
    return gran == SAGE_QK_PER_THREAD ? block * 4 + (tok % 8) / 2 : block;
}

/* Position of token t inside its 16-token group in the V^T storage, so that the QK^T
 * accumulator registers, packed as they are, form the PV A operand (HOPPER-NOTES A7):
 * positions 0..15 hold tokens 0 1 8 9 2 3 10 11 4 5 12 13 6 7 14 15. */
SAGE_HD int sage_vt_position(int t16) { return 4 * ((t16 % 8) / 2) + 2 * (t16 / 8) + t16 % 2; }

/* Offset of V8[d][t] inside one head's V^T block [d_pad][nk_pad] (FP8 PV, GPU storage). */
SAGE_HD int64_t sage_vt_offset(int64_t d, int64_t t, int64_t nk_pad) {
    return d * nk_pad + (t & ~(int64_t)15) + sage_vt_position((int)(t & 15));
}

#endif
