"""The numba kernel of the native bias route (:mod:`gmvae_cv.metad.native`); imported only when
that route is used. Functions are module-level so that numba caches their machine code on disk
(``cache=True``): the first use on a machine compiles them (tens of seconds), later processes load
them in about a second."""

import math

import numpy as np

import numba

_FLAGS = dict(cache=True, fastmath={"reassoc", "contract"}, nogil=True)  # SIMD sums, FMA: deterministic
_njit = numba.njit(**_FLAGS)
# the steps of one evaluation: inlined into their caller in numba's IR (a call between compiled
# functions, with its array arguments unpacked, costs about a fifth of a whole evaluation here)
_step = numba.njit(inline="always", **_FLAGS)


@_njit
def chain_fwd(w, b, dims, relu, a_in, acts):
    # acts holds each layer's output, concatenated; returns the offset of the last output
    off_w = 0
    off_b = 0
    src_off = -1
    n_layers = dims.shape[0]
    for layer in range(n_layers):
        n_in = dims[layer, 0]
        n_out = dims[layer, 1]
        for o in range(n_out):
            acc = b[off_b + o]
            for i in range(n_in):
                v = a_in[i] if src_off < 0 else acts[src_off + i]
                acc += w[off_w + o * n_in + i] * v
            if relu[layer] and not acc > 0.0:
                acc = 0.0
            acts[off_b + o] = acc
        src_off = off_b
        off_w += n_in * n_out
        off_b += n_out
    return src_off


@_njit
def chain_bwd(w, b, dims, relu, acts, g_out, g_in):
    # g_out: gradient at the last output; writes the gradient at a_in into g_in (added)
    n_layers = dims.shape[0]
    if n_layers == 0:
        for i in range(g_in.shape[0]):
            g_in[i] += g_out[i]
        return
    offs_w = np.zeros(n_layers + 1, dtype=np.int64)
    offs_b = np.zeros(n_layers + 1, dtype=np.int64)
    for layer in range(n_layers):
        offs_w[layer + 1] = offs_w[layer] + dims[layer, 0] * dims[layer, 1]
        offs_b[layer + 1] = offs_b[layer] + dims[layer, 1]
    n_last = dims[n_layers - 1, 1]
    g = np.empty(n_last)
    for o in range(n_last):
        g[o] = g_out[o]
    for layer in range(n_layers - 1, -1, -1):
        n_in = dims[layer, 0]
        n_out = dims[layer, 1]
        if relu[layer]:
            for o in range(n_out):
                if not acts[offs_b[layer] + o] > 0.0:
                    g[o] = 0.0
        gi = np.zeros(n_in)
        for o in range(n_out):
            go = g[o]
            if go != 0.0:
                base = offs_w[layer] + o * n_in
                for i in range(n_in):
                    gi[i] += w[base + i] * go
        g = gi
    for i in range(g_in.shape[0]):
        g_in[i] += g[i]


@_njit
def cross(a0, a1, a2, b0, b1, b2):
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@_njit
def delta(pos, i, j):
    """pos[j] - pos[i] as three floats."""
    return pos[j, 0] - pos[i, 0], pos[j, 1] - pos[i, 1], pos[j, 2] - pos[i, 2]


@_njit
def pair_force(forces, i, j, f, dx, dy, dz):
    """The force of an energy that depends on r_ij only: f = dE/dr / r, d = pos[j] - pos[i]."""
    forces[j, 0] -= f * dx
    forces[j, 1] -= f * dy
    forces[j, 2] -= f * dz
    forces[i, 0] += f * dx
    forces[i, 1] += f * dy
    forces[i, 2] += f * dz


@_njit
def angle_vectors(pos, i, j, k):
    """u = pos[i] - pos[j], v = pos[k] - pos[j], w = u x v."""
    u0, u1, u2 = delta(pos, j, i)
    v0, v1, v2 = delta(pos, j, k)
    w0, w1, w2 = cross(u0, u1, u2, v0, v1, v2)
    return u0, u1, u2, v0, v1, v2, w0, w1, w2


@_njit
def bond_vectors(pos, a0, a1, a2, a3):
    """The three bond vectors of a dihedral, b1 = a1 - a0, b2 = a2 - a1, b3 = a3 - a2."""
    b10, b11, b12 = delta(pos, a0, a1)
    b20, b21, b22 = delta(pos, a1, a2)
    b30, b31, b32 = delta(pos, a2, a3)
    return b10, b11, b12, b20, b21, b22, b30, b31, b32


@_njit
def dihedral_yx(b10, b11, b12, b20, b21, b22, b30, b31, b32):
    """phi = atan2(y, x): y = |b2| b1.(b2 x b3), x = (b1 x b2).(b2 x b3); also |b2| and b1.(b2 x b3)."""
    c10, c11, c12 = cross(b20, b21, b22, b30, b31, b32)
    c20, c21, c22 = cross(b10, b11, b12, b20, b21, b22)
    nb2 = math.sqrt(b20 * b20 + b21 * b21 + b22 * b22)
    trip = b10 * c10 + b11 * c11 + b12 * c12
    return trip * nb2, c10 * c20 + c11 * c21 + c12 * c22, nb2, trip


@_njit
def switching(r, r0, n, m):
    """PLUMED's rational switching function of t = ln(r/r0) (see features.types): value, dvalue/dt."""
    t = math.log(r / r0)
    a = abs(t)
    if a < 1e-9:
        return n / m * (1.0 + 0.5 * (n - m) * t), n / m * 0.5 * (n - m)
    tpos = t if t > 0.0 else 0.0
    ea = math.expm1(-n * a)
    eb = math.expm1(-m * a)
    cc = math.exp((n - m) * tpos)
    dq_dt = (-n * math.exp(-n * a) * eb + m * math.exp(-m * a) * ea) / (eb * eb) * cc * (1.0 if t > 0.0 else -1.0)
    if t > 0.0:
        dq_dt += ea / eb * cc * (n - m)
    return ea / eb * cc, dq_dt


@_njit
def features(pos, dist, angle, torsion, tmode, contact, cr0, cn, cm, dest, x):
    c = 0
    for p in range(dist.shape[0]):
        dx, dy, dz = delta(pos, dist[p, 0], dist[p, 1])
        x[dest[c]] = math.sqrt(dx * dx + dy * dy + dz * dz)
        c += 1
    for p in range(angle.shape[0]):
        u0, u1, u2, v0, v1, v2, w0, w1, w2 = angle_vectors(pos, angle[p, 0], angle[p, 1], angle[p, 2])
        x[dest[c]] = math.atan2(math.sqrt(w0 * w0 + w1 * w1 + w2 * w2), u0 * v0 + u1 * v1 + u2 * v2)
        c += 1
    for p in range(torsion.shape[0]):
        b = bond_vectors(pos, torsion[p, 0], torsion[p, 1], torsion[p, 2], torsion[p, 3])
        yy, xx, _, _ = dihedral_yx(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8])
        phi = math.atan2(yy, xx)
        if tmode[p] == 0:
            x[dest[c]] = phi
        elif tmode[p] == 1:
            x[dest[c]] = math.sin(phi)
        else:
            x[dest[c]] = math.cos(phi)
        c += 1
    for p in range(contact.shape[0]):
        dx, dy, dz = delta(pos, contact[p, 0], contact[p, 1])
        x[dest[c]] = switching(math.sqrt(dx * dx + dy * dy + dz * dz), cr0[p], cn[p], cm[p])[0]
        c += 1


@_njit
def angle_bwd(pos, i, j, k, g, forces):
    """forces -= g dtheta/dpos for the angle theta(i, j, k) = atan2(|u x v|, u.v)."""
    u0, u1, u2, v0, v1, v2, w0, w1, w2 = angle_vectors(pos, i, j, k)
    s = math.sqrt(w0 * w0 + w1 * w1 + w2 * w2)
    co = u0 * v0 + u1 * v1 + u2 * v2
    den = s * s + co * co
    # dtheta = (co ds - s dco) / den; ds/du = (v x w)/s, ds/dv = (w x u)/s
    vw0, vw1, vw2 = cross(v0, v1, v2, w0, w1, w2)
    wu0, wu1, wu2 = cross(w0, w1, w2, u0, u1, u2)
    a_s = g * co / (den * s)
    a_c = -g * s / den
    du0, du1, du2 = a_s * vw0 + a_c * v0, a_s * vw1 + a_c * v1, a_s * vw2 + a_c * v2
    dv0, dv1, dv2 = a_s * wu0 + a_c * u0, a_s * wu1 + a_c * u1, a_s * wu2 + a_c * u2
    forces[i, 0] -= du0
    forces[i, 1] -= du1
    forces[i, 2] -= du2
    forces[k, 0] -= dv0
    forces[k, 1] -= dv1
    forces[k, 2] -= dv2
    forces[j, 0] += du0 + dv0
    forces[j, 1] += du1 + dv1
    forces[j, 2] += du2 + dv2


@_njit
def torsion_bwd(pos, a0, a1, a2, a3, mode, g, forces):
    """forces -= g df/dpos for f = phi, sin(phi) or cos(phi) (mode 0, 1, 2) of the dihedral a0-a1-a2-a3."""
    b10, b11, b12, b20, b21, b22, b30, b31, b32 = bond_vectors(pos, a0, a1, a2, a3)
    yy, xx, nb2, trip = dihedral_yx(b10, b11, b12, b20, b21, b22, b30, b31, b32)
    c10, c11, c12 = cross(b20, b21, b22, b30, b31, b32)
    c20, c21, c22 = cross(b10, b11, b12, b20, b21, b22)
    phi = math.atan2(yy, xx)
    if mode == 1:
        g = g * math.cos(phi)
    elif mode == 2:
        g = -g * math.sin(phi)
    den = xx * xx + yy * yy
    gy = g * xx / den
    gxx = -g * yy / den
    d12 = b10 * b20 + b11 * b21 + b12 * b22
    d23 = b20 * b30 + b21 * b31 + b22 * b32
    d13 = b10 * b30 + b11 * b31 + b12 * b32
    d22 = b20 * b20 + b21 * b21 + b22 * b22
    # y = |b2| b1.(b2 x b3);  x = (b2.b1)(b3.b2) - (b2.b2)(b3.b1)
    c31 = cross(b30, b31, b32, b10, b11, b12)
    e1 = (gy * nb2 * c10 + gxx * (d23 * b20 - d22 * b30),
          gy * nb2 * c11 + gxx * (d23 * b21 - d22 * b31),
          gy * nb2 * c12 + gxx * (d23 * b22 - d22 * b32))
    e3 = (gy * nb2 * c20 + gxx * (d12 * b20 - d22 * b10),
          gy * nb2 * c21 + gxx * (d12 * b21 - d22 * b11),
          gy * nb2 * c22 + gxx * (d12 * b22 - d22 * b12))
    e2 = (gy * (trip * b20 / nb2 + nb2 * c31[0]) + gxx * (d23 * b10 + d12 * b30 - 2.0 * d13 * b20),
          gy * (trip * b21 / nb2 + nb2 * c31[1]) + gxx * (d23 * b11 + d12 * b31 - 2.0 * d13 * b21),
          gy * (trip * b22 / nb2 + nb2 * c31[2]) + gxx * (d23 * b12 + d12 * b32 - 2.0 * d13 * b22))
    for q in range(3):
        forces[a0, q] += e1[q]
        forces[a1, q] -= e1[q] - e2[q]
        forces[a2, q] -= e2[q] - e3[q]
        forces[a3, q] -= e3[q]


@_njit
def features_bwd(pos, dist, angle, torsion, tmode, contact, cr0, cn, cm, dest, gx, forces):
    # forces -= d(sum_f gx_f x_f)/dpos
    c = 0
    for p in range(dist.shape[0]):
        g = gx[dest[c]]
        c += 1
        if g != 0.0:
            i, j = dist[p, 0], dist[p, 1]
            dx, dy, dz = delta(pos, i, j)
            pair_force(forces, i, j, g / math.sqrt(dx * dx + dy * dy + dz * dz), dx, dy, dz)
    for p in range(angle.shape[0]):
        g = gx[dest[c]]
        c += 1
        if g != 0.0:
            angle_bwd(pos, angle[p, 0], angle[p, 1], angle[p, 2], g, forces)
    for p in range(torsion.shape[0]):
        g = gx[dest[c]]
        c += 1
        if g != 0.0:
            torsion_bwd(pos, torsion[p, 0], torsion[p, 1], torsion[p, 2], torsion[p, 3], tmode[p], g, forces)
    for p in range(contact.shape[0]):
        g = gx[dest[c]]
        c += 1
        if g != 0.0:
            i, j = contact[p, 0], contact[p, 1]
            dx, dy, dz = delta(pos, i, j)
            r = math.sqrt(dx * dx + dy * dy + dz * dz)
            pair_force(forces, i, j, g * switching(r, cr0[p], cn[p], cm[p])[1] / (r * r), dx, dy, dz)


@_njit
def spline(s, table, offset, inv_spacing, n_bins, periodic, strides, offsets, hermite, grad):
    # GridBias: the Hermite patch of s's cell; value, and gradient into grad (per CV unit)
    d = s.shape[0]
    xs = np.empty(d)
    cell = np.empty(d)
    inside = True
    for a in range(d):
        x = offset[a] + s[a] * inv_spacing[a]
        if periodic[a]:
            x = x - n_bins[a] * math.floor(x / n_bins[a])  # torch.remainder
        elif not (x >= 0.0 and x <= n_bins[a]):
            inside = False
        cc = math.floor(x)
        if cc < 0.0:
            cc = 0.0
        if cc > n_bins[a] - 1.0:
            cc = n_bins[a] - 1.0
        xs[a] = x
        cell[a] = cc
    for a in range(d):
        grad[a] = 0.0
    if not inside:
        return 0.0
    basis = np.zeros((d, 4))
    dbasis = np.zeros((d, 4))
    base = 0.0
    for a in range(d):
        u = xs[a] - cell[a]
        pw = (1.0, u, u * u, u * u * u)
        dpw = (0.0, 1.0, 2.0 * u, 3.0 * u * u)
        for k in range(4):
            acc = 0.0
            dacc = 0.0
            for p in range(4):
                acc += pw[p] * hermite[p, k]
                dacc += dpw[p] * hermite[p, k]
            basis[a, k] = acc
            dbasis[a, k] = dacc
        base += cell[a] * strides[a]
    ib = int(base)
    flat = table.reshape(-1)
    n_c = offsets.shape[0]
    energy = 0.0
    digits = np.empty(d, dtype=np.int64)
    for cidx in range(n_c):
        v = flat[offsets[cidx] + ib]
        rem = cidx
        prod = 1.0
        for a in range(d - 1, -1, -1):  # digits of cidx in base 4, axis 0 most significant
            digits[a] = rem % 4
            rem //= 4
        for a in range(d):
            prod *= basis[a, digits[a]]
        energy += v * prod
        for b in range(d):
            pr = 1.0
            for a in range(d):
                pr *= dbasis[a, digits[a]] if a == b else basis[a, digits[a]]
            grad[b] += v * pr
    for a in range(d):
        grad[a] *= inv_spacing[a]
    return energy


@_step
def encoder_fwd(x, w0, rowmap, b0, zw, zb, zdims, zrelu, yw, yb, ydims, yrelu, wl, bl, mult, group, hw, hb):
    """The encoder mean s(x) (see native.NativeRecipe), with what its reverse pass needs.

    Returns s, the first layer's activations r, the two chains' activations and last-output offsets,
    and the group probabilities q(y|x) (one per group of identical logits, weights ``mult``)."""
    n_f = x.shape[0]
    n_u = w0.shape[0]  # distinct rows of the first layer (the K copies of q(z|x,y)'s share theirs)
    u = np.empty(n_u)
    for o in range(n_u):
        acc = 0.0
        for i in range(n_f):
            acc += w0[o, i] * x[i]
        u[o] = acc
    n_r = rowmap.shape[0]
    r = np.empty(n_r)
    for o in range(n_r):
        acc = u[rowmap[o]] + b0[o]
        r[o] = acc if acc > 0.0 else 0.0
    zacts = np.empty(max(1, int(zdims[:, 1].sum())) if zdims.shape[0] else 1)
    yacts = np.empty(max(1, int(ydims[:, 1].sum())) if ydims.shape[0] else 1)
    zo = chain_fwd(zw, zb, zdims, zrelu, r, zacts)
    yo = chain_fwd(yw, yb, ydims, yrelu, r, yacts)
    n_h = hw.shape[0]
    n_t = wl.shape[1]
    h = r[:n_h] if zo < 0 else zacts[zo:zo + n_h]
    t = r[:n_t] if yo < 0 else yacts[yo:yo + n_t]
    n_g = wl.shape[0]
    lg = np.empty(n_g)
    lmax = -np.inf
    for g in range(n_g):
        acc = bl[g]
        for i in range(n_t):
            acc += wl[g, i] * t[i]
        lg[g] = acc
        if acc > lmax:
            lmax = acc
    z = 0.0
    qg = np.empty(n_g)
    for g in range(n_g):
        qg[g] = math.exp(lg[g] - lmax)
        z += mult[g] * qg[g]
    for g in range(n_g):
        qg[g] /= z
    n_d = hw.shape[1]
    s = np.empty(n_d)
    for dd in range(n_d):
        s[dd] = hb[dd]
    for e in range(n_h):
        ge = group[e]
        if ge < 0:
            continue
        qe = qg[ge] * h[e]
        for dd in range(n_d):
            s[dd] += qe * hw[e, dd]
    return s, r, zacts, zo, yacts, yo, qg


@_step
def encoder_bwd(gs, r, zacts, zo, yacts, yo, qg, w0, rowmap, zw, zb, zdims, zrelu, yw, yb, ydims, yrelu,
                wl, mult, group, hw, gx):
    """Adds d(gs . s)/dx to gx, from :func:`encoder_fwd`'s saved activations."""
    n_h = hw.shape[0]
    n_t = wl.shape[1]
    n_g = wl.shape[0]
    n_d = hw.shape[1]
    h = r[:n_h] if zo < 0 else zacts[zo:zo + n_h]
    # s = sum_e q_e h_e hw_e + hb
    gh = np.zeros(n_h)
    ag = np.zeros(n_g)
    for e in range(n_h):
        ge = group[e]
        if ge < 0:
            continue
        ce = 0.0
        for dd in range(n_d):
            ce += hw[e, dd] * gs[dd]
        gh[e] = qg[ge] * ce
        ag[ge] += h[e] * ce
    bsum = 0.0
    for g in range(n_g):
        bsum += ag[g] * qg[g]
    gl = np.empty(n_g)
    for g in range(n_g):
        gl[g] = qg[g] * (ag[g] - mult[g] * bsum)
    gt = np.zeros(n_t)
    for g in range(n_g):
        for i in range(n_t):
            gt[i] += wl[g, i] * gl[g]
    n_r = rowmap.shape[0]
    gr = np.zeros(n_r)
    chain_bwd(zw, zb, zdims, zrelu, zacts, gh, gr)
    chain_bwd(yw, yb, ydims, yrelu, yacts, gt, gr)
    n_u = w0.shape[0]
    gu = np.zeros(n_u)
    for o in range(n_r):
        if r[o] > 0.0:
            gu[rowmap[o]] += gr[o]
    for o in range(n_u):
        go = gu[o]
        if go != 0.0:
            for i in range(gx.shape[0]):
                gx[i] += w0[o, i] * go


@_step
def walls(s, lo, hi, kappa, grad):
    """The walls' energy (metad.walls: kappa (s - hi)^2 above hi, kappa (lo - s)^2 below lo; kappa 0 on
    axes without walls), its gradient added to grad."""
    e = 0.0
    for a in range(s.shape[0]):
        if s[a] > hi[a]:
            d = s[a] - hi[a]
            e += kappa[a] * d * d
            grad[a] += 2.0 * kappa[a] * d
        elif s[a] < lo[a]:
            d = lo[a] - s[a]
            e += kappa[a] * d * d
            grad[a] -= 2.0 * kappa[a] * d
    return e


@_njit
def energy_forces(pos, table, components,
                  dist, angle, torsion, tmode, contact, cr0, cn, cm, dest,
                  has_net, w0, rowmap, b0, zw, zb, zdims, zrelu, yw, yb, ydims, yrelu, wl, bl, group, mult, hw, hb,
                  offset, inv_spacing, n_bins, periodic, strides, offsets, hermite, wall_lo, wall_hi, wall_kappa,
                  forces, cv_out):
    n_f = dest.shape[0]
    x = np.zeros(n_f)
    features(pos, dist, angle, torsion, tmode, contact, cr0, cn, cm, dest, x)
    for i in range(forces.shape[0]):
        forces[i, 0] = 0.0
        forces[i, 1] = 0.0
        forces[i, 2] = 0.0
    gx = np.zeros(n_f)
    nd = components.shape[0]
    sb = np.empty(nd)
    gsb = np.empty(nd)
    if has_net:
        s, r, zacts, zo, yacts, yo, qg = encoder_fwd(x, w0, rowmap, b0, zw, zb, zdims, zrelu, yw, yb, ydims, yrelu,
                                                     wl, bl, mult, group, hw, hb)
    else:  # the CV is the features themselves (a torsion-only CV, for example)
        s, r, zacts, zo, yacts, yo, qg = x, x, x, -1, x, -1, x
    for a in range(cv_out.shape[0]):
        cv_out[a] = s[a]
    for a in range(nd):
        sb[a] = s[components[a]]
    energy = spline(sb, table, offset, inv_spacing, n_bins, periodic, strides, offsets, hermite, gsb)
    energy += walls(sb, wall_lo, wall_hi, wall_kappa, gsb)
    if has_net:
        gs = np.zeros(s.shape[0])
        for a in range(nd):
            gs[components[a]] += gsb[a]
        encoder_bwd(gs, r, zacts, zo, yacts, yo, qg, w0, rowmap, zw, zb, zdims, zrelu, yw, yb, ydims, yrelu,
                    wl, mult, group, hw, gx)
    else:
        for a in range(nd):
            gx[components[a]] += gsb[a]
    features_bwd(pos, dist, angle, torsion, tmode, contact, cr0, cn, cm, dest, gx, forces)
    return energy


@_njit
def f1(fp, hdr, k):
    o = hdr[3 * k]
    return fp[o:o + hdr[3 * k + 1]]


@_njit
def f2(fp, hdr, k):
    o, a, b = hdr[3 * k], hdr[3 * k + 1], hdr[3 * k + 2]
    return fp[o:o + a * b].reshape((a, b))


@_njit
def packed(pos, table, fp, ip, hdr, forces, cv_out):
    # few arguments: numba's dispatcher costs about a microsecond per argument
    nf = N_FLOAT
    return energy_forces(
        pos, table, f1(ip, hdr, nf + 13),
        f2(ip, hdr, nf + 0), f2(ip, hdr, nf + 1), f2(ip, hdr, nf + 2), f1(ip, hdr, nf + 3), f2(ip, hdr, nf + 4),
        f1(fp, hdr, 0), f1(fp, hdr, 1), f1(fp, hdr, 2), f1(ip, hdr, nf + 5),
        f1(ip, hdr, nf + 14)[0] != 0, f2(fp, hdr, 3), f1(ip, hdr, nf + 15), f1(fp, hdr, 4), f1(fp, hdr, 5), f1(fp, hdr, 6),
        f2(ip, hdr, nf + 6), f1(ip, hdr, nf + 7), f1(fp, hdr, 7), f1(fp, hdr, 8), f2(ip, hdr, nf + 8),
        f1(ip, hdr, nf + 9), f2(fp, hdr, 9), f1(fp, hdr, 10), f1(ip, hdr, nf + 10), f1(fp, hdr, 11),
        f2(fp, hdr, 12), f1(fp, hdr, 13),
        f1(fp, hdr, 14), f1(fp, hdr, 15), f1(fp, hdr, 16), f1(ip, hdr, nf + 11) != 0, f1(fp, hdr, 17),
        f1(ip, hdr, nf + 12), f2(fp, hdr, 18), f1(fp, hdr, 19), f1(fp, hdr, 20), f1(fp, hdr, 21),
        forces, cv_out)


FLOATS = ("cr0", "cn", "cm", "w0", "b0", "zw", "zb", "yw", "yb", "wl", "bl", "mult", "hw", "hb",
          "offset", "inv_spacing", "n_bins", "strides", "hermite", "wall_lo", "wall_hi", "wall_kappa")
INTS = ("dist", "angle", "torsion", "tmode", "contact", "dest", "zdims", "zrelu", "ydims", "yrelu", "group",
        "periodic", "offsets", "components", "flags", "rowmap")
N_FLOAT = len(FLOATS)
