/* One tanh RNN layer, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), h_0 = 0, all T steps in one launch (rnn.py).
 * Plain twin: the per-step loop of minirso.nn.recurrent.RNN (one matrix product and a few elementwise
 * operations per step).  Block b owns sequences b*S .. b*S+S-1; thread (s, j) = (tid / H, tid % H) owns
 * hidden unit j of sequence s.  Shared memory: W_ih^T (I, H) and W_hh^T (H, H), transposed so that the H
 * threads of a sequence read consecutive words (no bank conflicts), and the hidden states twice (S, H): step t
 * reads one copy and writes the other, so ONE barrier per step separates the reads from the writes.
 * The float64 atomicAdd needs compute capability 6.0 (rnn.py checks it before choosing this kernel). */
extern "C" __global__ void minirso_rnn_tanh(
    const float *__restrict__ x,     /* (T, N, I) inputs, time-major */
    const float *__restrict__ w_ih,  /* (H, I) */
    const float *__restrict__ w_hh,  /* (H, H) */
    const float *__restrict__ bias,  /* (H,) */
    float *__restrict__ seq,         /* (T, N, H) every state, written if write_seq */
    float *__restrict__ last,        /* (N, H) the last state */
    double *__restrict__ hh_sum,     /* (1,) += sum over t, n of |h_{t-1}|^2, if record */
    int T, int N, int I, int H, int S, int write_seq, int record)
{
    extern __shared__ float smem[];
    float *wih = smem;              /* (I, H): wih[i * H + j] = w_ih[j, i] */
    float *whh = wih + I * H;       /* (H, H): whh[k * H + j] = w_hh[j, k] */
    float *hbuf = whh + H * H;      /* (2, S, H) */
    const int tid = (int)threadIdx.x, nt = (int)blockDim.x;
    const int s = tid / H, j = tid % H;
    const int n = (int)blockIdx.x * S + s;
    const int active = (s < S) && (n < N);
    for (int k = tid; k < I * H; k += nt) wih[(k % I) * H + k / I] = w_ih[k];
    for (int k = tid; k < H * H; k += nt) whh[(k % H) * H + k / H] = w_hh[k];
    for (int k = tid; k < 2 * S * H; k += nt) hbuf[k] = 0.0f;
    const float b = (s < S) ? bias[j] : 0.0f;
    double q = 0.0;
    int cur = 0;
    __syncthreads();
    for (int t = 0; t < T; ++t) {
        if (active) {
            const float *h = hbuf + cur * S * H + s * H;
            const float *xt = x + ((long long)t * N + n) * I;
            float z = 0.0f;
            for (int i = 0; i < I; ++i) z += wih[i * H + j] * xt[i];
            for (int k = 0; k < H; ++k) z += whh[k * H + j] * h[k];
            const float hj = h[j];
            q += (double)(hj * hj);  /* float32 square summed in float64, as the array code */
            const float hn = tanhf(z + b);
            hbuf[(cur ^ 1) * S * H + s * H + j] = hn;
            if (write_seq) seq[((long long)t * N + n) * H + j] = hn;
        }
        cur ^= 1;
        __syncthreads();
    }
    if (active) {
        last[(long long)n * H + j] = hbuf[cur * S * H + s * H + j];
        if (record) atomicAdd(hh_sum, q);
    }
}
