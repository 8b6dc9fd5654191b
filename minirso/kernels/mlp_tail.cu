/* Everything of a small fully connected net after its first matrix product, for every row, in ONE launch
 * (mlp.py): the first layer's bias and activation, the remaining Dense layers (widths <= MINIRSO_MLP_MAX), an
 * optional softmax, the per-row loss, and one partial sum per block (a fixed-order tree in shared memory, so
 * the result does not depend on scheduling).  Thread = row.  The first product x W^T (the only large one:
 * N x 784 inputs in aMC's Fig. 1) stays with cuBLAS.  Plain twin: minirso.optim.model_loss.ModelLoss's
 * forward through the Dense layers and the loss of minirso.losses.
 * layout (L, 5), one row per Dense layer: weight offset and bias offset (-1: none) in the flat parameter
 * buffer, inputs, outputs, activation after it (0 none, 1 tanh, 2 relu).  Layer 0's weight is not read.
 * loss 0: sum over classes of (out_j - target_j)^2, target = one-hot(label) or a float row;
 * loss 1: cross-entropy -log softmax(out)[label], in double (as minirso's float64 cross_entropy). */
#define MINIRSO_MLP_MAX 64  /* the widest layer after the first product (mlp.py reads it from here) */

extern "C" __global__ void minirso_mlp_tail(
    const float *__restrict__ z1,          /* (N, layout[0].outputs) x W_1^T, before the bias */
    const float *__restrict__ params,      /* the flat parameter buffer */
    const long long *__restrict__ layout,  /* (L, 5) */
    const long long *__restrict__ labels,  /* (N,) integer labels, if target_kind == 0 */
    const float *__restrict__ targets,     /* (N, C) float targets, if target_kind == 1 */
    double *__restrict__ partial,          /* (blocks,) the block's sum of per-row losses */
    int N, int L, int softmax, int loss, int target_kind)
{
    extern __shared__ double red[];  /* (threads,), threads a power of two */
    const int tid = (int)threadIdx.x, nt = (int)blockDim.x;
    const int n = (int)blockIdx.x * nt + tid;
    double row = 0.0;
    if (n < N) {
        float a[MINIRSO_MLP_MAX], b[MINIRSO_MLP_MAX];
        int width = (int)layout[3];
        for (int j = 0; j < width; ++j) {
            float s = z1[(long long)n * width + j];
            if (layout[1] >= 0) s += params[layout[1] + j];  /* x W^T first, then + b: as Dense */
            a[j] = layout[4] == 1 ? tanhf(s) : (layout[4] == 2 ? (s > 0.0f ? s : 0.0f) : s);
        }
        for (int l = 1; l < L; ++l) {
            const long long *lay = layout + 5 * l;
            const float *w = params + lay[0];  /* (outputs, inputs), row-major */
            const int in = (int)lay[2], out = (int)lay[3], act = (int)lay[4];
            for (int j = 0; j < out; ++j) {
                float s = 0.0f;
                for (int k = 0; k < in; ++k) s += w[j * in + k] * a[k];
                if (lay[1] >= 0) s += params[lay[1] + j];
                b[j] = act == 1 ? tanhf(s) : (act == 2 ? (s > 0.0f ? s : 0.0f) : s);
            }
            for (int j = 0; j < out; ++j) a[j] = b[j];
            width = out;
        }
        if (softmax) {  /* float32, max subtracted: as minirso.nn.functional.softmax */
            float m = a[0], s = 0.0f;
            for (int j = 1; j < width; ++j) m = a[j] > m ? a[j] : m;
            for (int j = 0; j < width; ++j) { a[j] = expf(a[j] - m); s += a[j]; }
            for (int j = 0; j < width; ++j) a[j] = a[j] / s;
        }
        if (loss == 0) {
            for (int j = 0; j < width; ++j) {
                const float t = target_kind == 1 ? targets[(long long)n * width + j]
                                                 : (labels[n] == j ? 1.0f : 0.0f);
                const float d = a[j] - t;  /* float32 difference and square, summed in double */
                row += (double)(d * d);
            }
        } else {
            const long long y = labels[n];
            double m = a[0], s = 0.0;
            for (int j = 1; j < width; ++j) m = (double)a[j] > m ? (double)a[j] : m;
            for (int j = 0; j < width; ++j) s += exp((double)a[j] - m);
            row = (y >= 0 && y < width) ? m + log(s) - (double)a[y] : nan("");  /* NaN for a bad label */
        }
    }
    red[tid] = row;
    __syncthreads();
    for (int h = nt / 2; h > 0; h /= 2) {
        if (tid < h) red[tid] += red[tid + h];
        __syncthreads();
    }
    if (tid == 0) partial[(int)blockIdx.x] = red[0];
}
