"""Forward kinematics and point Jacobians of a hinge-joint arm, built from its MJCF file with xml.etree.

No simulator is imported: the arm's model file is read as data (body tree, pos/quat, hinge axes and
ranges with MJCF default classes, sites, actuator ctrl ranges, collision geoms), so the shield can be used
with the real robot and only numpy. Supported: bodies with at most one hinge joint each, orientations as
quat / axisangle / euler, compiler angle="radian" or "degree". Collision geoms (capsule, cylinder, sphere,
box) become the shield's collision spheres (`spheres_for`).
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _floats(text, n=None, what=""):
    vals = [float(x) for x in text.split()]
    if n is not None and len(vals) != n:
        raise ValueError(f"{what}: expected {n} numbers, got {text!r}")
    return np.array(vals)


def quat_to_mat(q):
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def axis_angle_mat(axis, angle):
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


@dataclass(frozen=True)
class Geom:
    body: int
    name: str
    kind: str  # "segment" (capsule/cylinder: p0, p1, radius) or "ball" (centre, radius)
    p0: tuple
    p1: tuple
    radius: float


class _Defaults:
    """MJCF default classes: attribute lookup through the class chain down to "main"."""

    def __init__(self, root) -> None:
        self.parent: dict[str, str | None] = {}
        self.attrs: dict[str, dict[str, dict]] = {}
        for d in root.findall("default"):
            self._walk(d, None)

    def _walk(self, el, parent) -> None:
        name = el.get("class", "main")
        self.parent[name] = parent
        self.attrs[name] = {child.tag: dict(child.attrib) for child in el if child.tag != "default"}
        for child in el.findall("default"):
            self._walk(child, name)

    def get(self, tag, cls, key):
        while cls is not None:
            val = self.attrs.get(cls, {}).get(tag, {}).get(key)
            if val is not None:
                return val
            cls = self.parent.get(cls)
        return None


class ArmKinematics:
    """Kinematic tree of the arm. Joint order = document order of the hinge joints (MuJoCo's qpos order)."""

    def __init__(self, bodies, joints, sites, geoms, ctrl_range):
        self.body_names = [b["name"] for b in bodies]
        self.parent = np.array([b["parent"] for b in bodies])
        n = len(bodies)
        self.T_fixed = np.zeros((n, 4, 4))
        for i, b in enumerate(bodies):
            self.T_fixed[i, :3, :3], self.T_fixed[i, :3, 3], self.T_fixed[i, 3, 3] = b["R"], b["pos"], 1.0
        self.joint_body = np.array([j["body"] for j in joints], dtype=int)
        self.body_joint = np.full(n, -1)
        self.body_joint[self.joint_body] = np.arange(len(joints))
        self.joint_names = [j["name"] for j in joints]
        self.axis_local = np.array([j["axis"] / np.linalg.norm(j["axis"]) for j in joints])
        self.jpos_local = np.array([j["pos"] for j in joints])
        self.lower = np.array([j["range"][0] for j in joints])
        self.upper = np.array([j["range"][1] for j in joints])
        self.ctrl_lower, self.ctrl_upper = ctrl_range
        self.sites = sites
        self.geoms = geoms
        self.n_joints = len(joints)
        # ancestor[b, j]: joint j moves body b
        anc = np.zeros((n, self.n_joints), dtype=bool)
        for b in range(n):
            p = b
            while p >= 0:
                if self.body_joint[p] >= 0:
                    anc[b, self.body_joint[p]] = True
                p = self.parent[p]
        self.ancestor = anc
        # constant pieces of forward(): Rodrigues matrices of the axes, fixed rotations of jointed bodies
        a = self.axis_local
        K = np.zeros((self.n_joints, 3, 3))
        K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -a[:, 2], a[:, 1], -a[:, 0]
        K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = a[:, 2], -a[:, 1], a[:, 0]
        self._K, self._KK, self._eye = K, K @ K, np.eye(3)
        self._R_fixed_j = self.T_fixed[self.joint_body, :3, :3].copy()
        self._jpos_any = bool(np.any(self.jpos_local != 0.0))
        self._all_z = bool(np.allclose(a, [0.0, 0.0, 1.0]))
        self._chain = [(i, int(p)) for i, p in enumerate(self.parent) if p >= 0]
        self._skew_idx = np.array([1, 2, 3, 5, 6, 7])
        self._skew_src = np.array([2, 1, 2, 0, 1, 0])
        self._skew_sign = np.array([-1.0, 1.0, 1.0, -1.0, -1.0, 1.0])

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_mjcf(cls, path: str | Path) -> "ArmKinematics":
        root = ET.parse(path).getroot()
        comp = root.find("compiler")
        degrees = comp is None or comp.get("angle", "degree") == "degree"
        eulerseq = comp.get("eulerseq", "xyz") if comp is not None else "xyz"
        unit = math.pi / 180.0 if degrees else 1.0
        defaults = _Defaults(root)
        bodies, joints, sites, geoms = [], [], {}, []
        world = root.find("worldbody")
        if world is None:
            raise ValueError(f"{path}: no <worldbody>")

        def orient(el, what):
            if el.get("quat") is not None:
                return quat_to_mat(_floats(el.get("quat"), 4, f"{what} quat"))
            if el.get("axisangle") is not None:
                v = _floats(el.get("axisangle"), 4, f"{what} axisangle")
                return axis_angle_mat(v[:3], v[3] * unit)
            if el.get("euler") is not None:
                R = np.eye(3)
                for ax, ang in zip(eulerseq, _floats(el.get("euler"), 3, f"{what} euler")):
                    R = R @ axis_angle_mat(np.eye(3)["xyz".index(ax.lower())], ang * unit)
                return R
            for key in ("xyaxes", "zaxis"):
                if el.get(key) is not None:
                    raise ValueError(f"{path}: {what} uses {key!r}; only quat/axisangle/euler are supported")
            return np.eye(3)

        def walk(el, parent, childclass):
            for b in el.findall("body"):
                if b.get("mocap") == "true":
                    continue
                name = b.get("name", f"body{len(bodies)}")
                cc = b.get("childclass", childclass)
                idx = len(bodies)
                pos = _floats(b.get("pos", "0 0 0"), 3, f"body {name} pos")
                bodies.append({"name": name, "parent": parent, "pos": pos, "R": orient(b, f"body {name}")})
                hinges = []
                for j in b.findall("joint"):
                    jc = j.get("class", cc)
                    jtype = j.get("type") or defaults.get("joint", jc, "type") or "hinge"
                    if jtype != "hinge":
                        raise ValueError(f"{path}: joint {j.get('name')!r} is {jtype!r}; only hinge joints are supported")
                    rng = j.get("range") or defaults.get("joint", jc, "range")
                    if rng is None:
                        raise ValueError(f"{path}: joint {j.get('name')!r} has no range; the shield needs limits")
                    hinges.append({"name": j.get("name", f"joint{len(joints)}"), "body": idx,
                                   "axis": _floats(j.get("axis") or defaults.get("joint", jc, "axis") or "0 0 1", 3),
                                   "pos": _floats(j.get("pos") or defaults.get("joint", jc, "pos") or "0 0 0", 3),
                                   "range": _floats(rng, 2) * unit})
                if len(hinges) > 1:
                    raise ValueError(f"{path}: body {name!r} has {len(hinges)} joints; at most one is supported")
                joints.extend(hinges)
                for s in b.findall("site"):
                    sites[s.get("name", f"site{len(sites)}")] = (idx, _floats(s.get("pos", "0 0 0"), 3),
                                                                  orient(s, "site"))
                for g in b.findall("geom"):
                    geom = _geom(g, idx, cc, defaults, orient)
                    if geom is not None:
                        geoms.append(geom)
                walk(b, idx, cc)

        walk(world, -1, None)
        ctrl = {}
        act = root.find("actuator")
        for a in (act if act is not None else []):
            jn, cr = a.get("joint"), a.get("ctrlrange") or defaults.get(a.tag, a.get("class"), "ctrlrange")
            if jn is not None and cr is not None:
                ctrl[jn] = _floats(cr, 2)
        lo = np.array([ctrl.get(j["name"], j["range"])[0] for j in joints])
        hi = np.array([ctrl.get(j["name"], j["range"])[1] for j in joints])
        return cls(bodies, joints, sites, geoms, (lo, hi))

    # -- kinematics ---------------------------------------------------------------------------------------
    def forward(self, q):
        """World transforms of all bodies (n, 4, 4) at joint positions q."""
        q = np.asarray(q, dtype=float)
        c, s = np.cos(q), np.sin(q)
        T_loc = self.T_fixed.copy()
        if self._all_z:  # R_fixed · Rz(q): only the first two columns change
            R0, R1 = self._R_fixed_j[:, :, 0], self._R_fixed_j[:, :, 1]
            cc, ss = c[:, None], s[:, None]
            T_loc[self.joint_body, :3, 0] = cc * R0 + ss * R1
            T_loc[self.joint_body, :3, 1] = cc * R1 - ss * R0
            Rj = None
        else:  # Rodrigues about each local axis (through the joint's position)
            Rj = self._eye + s[:, None, None] * self._K + (1.0 - c)[:, None, None] * self._KK
            T_loc[self.joint_body, :3, :3] = self._R_fixed_j @ Rj
        if self._jpos_any:
            if Rj is None:
                Rj = self._eye + s[:, None, None] * self._K + (1.0 - c)[:, None, None] * self._KK
            T_loc[self.joint_body, :3, 3] += (self._R_fixed_j @ (self.jpos_local[:, :, None]
                                                                 - Rj @ self.jpos_local[:, :, None]))[..., 0]
        T = T_loc
        for i, p in self._chain:
            T[i] = T[p] @ T_loc[i]
        return T

    def joint_frames(self, T):
        """World axis and origin of every joint (n_joints, 3) each, from body transforms T."""
        Tb = T[self.joint_body]
        axes = (Tb[:, :3, :3] @ self.axis_local[:, :, None])[..., 0]
        origins = Tb[:, :3, 3]
        if self._jpos_any:
            origins = origins + (Tb[:, :3, :3] @ self.jpos_local[:, :, None])[..., 0]
        return axes, origins

    def points(self, T, body, local):
        """World positions (K, 3) of points given in body frames (body (K,), local (K, 3))."""
        Tb = T[body]
        return (Tb[:, :3, :3] @ local[:, :, None])[..., 0] + Tb[:, :3, 3]

    def jacobians(self, T, body, world_pts):
        """Positional Jacobians (K, 3, n_joints) of world points attached to `body`:
        column j = axis_j × (point − origin_j) for the joints that move the body, 0 otherwise."""
        axes, origins = self.joint_frames(T)
        skew = np.zeros((self.n_joints, 9))
        skew[:, self._skew_idx] = axes[:, self._skew_src] * self._skew_sign
        d = world_pts[None, :, :] - origins[:, None, :]  # (n, K, 3)
        J = skew.reshape(-1, 3, 3) @ d.transpose(0, 2, 1)  # (n, 3, K)
        return J.transpose(2, 1, 0) * self.ancestor[body][:, None, :]

    def site(self, q, name):
        """World position (3,) and positional Jacobian (3, n_joints) of a site."""
        body, pos, _ = self.sites[name]
        T = self.forward(q)
        p = self.points(T, np.array([body]), pos[None])
        return p[0], self.jacobians(T, np.array([body]), p)[0]

    # -- collision spheres ----------------------------------------------------------------------------------
    def spheres_for(self, body_names, spacing: float):
        """Spheres covering the collision geoms of the named bodies: (body (K,), centre (K,3), radius (K,),
        names). A capsule of length L and radius r gets n = round(L/spacing) + 1 spheres; each sphere's
        radius √(r² + (L/2(n−1))²) makes their union contain the capsule. A box gets its bounding sphere."""
        want = set(body_names)
        unknown = want - set(self.body_names)
        if unknown:
            raise ValueError(f"bodies {sorted(unknown)} are not in the arm model (have {self.body_names})")
        body, centre, radius, names = [], [], [], []
        for g in self.geoms:
            if self.body_names[g.body] not in want:
                continue
            p0, p1 = np.array(g.p0), np.array(g.p1)
            L = float(np.linalg.norm(p1 - p0))
            n = max(1, int(round(L / spacing))) + 1 if g.kind == "segment" and L > 1e-9 else 1
            half_gap = L / (2 * (n - 1)) if n > 1 else 0.0
            for t in np.linspace(0.0, 1.0, n) if n > 1 else [0.5]:
                body.append(g.body)
                centre.append(p0 + t * (p1 - p0))
                radius.append(math.hypot(g.radius, half_gap))
                names.append(f"{g.name}[{len(names)}]")
        return np.array(body, dtype=int), np.array(centre).reshape(-1, 3), np.array(radius), names


def _geom(g, body, cc, defaults, orient):
    gc = g.get("class", cc)
    kind = g.get("type") or defaults.get("geom", gc, "type") or "sphere"
    size = _floats(g.get("size") or defaults.get("geom", gc, "size") or "0", None)
    name = g.get("name", f"geom@{body}")
    if kind in ("capsule", "cylinder"):
        fromto = g.get("fromto") or defaults.get("geom", gc, "fromto")
        if fromto is not None:
            ft = _floats(fromto, 6, f"geom {name} fromto")
            p0, p1 = ft[:3], ft[3:]
        else:
            pos = _floats(g.get("pos", "0 0 0"), 3)
            axis = orient(g, f"geom {name}")[:, 2]
            p0, p1 = pos - size[1] * axis, pos + size[1] * axis
        return Geom(body, name, "segment", tuple(p0), tuple(p1), float(size[0]))
    pos = tuple(_floats(g.get("pos", "0 0 0"), 3))
    if kind == "sphere":
        return Geom(body, name, "ball", pos, pos, float(size[0]))
    if kind == "box":
        return Geom(body, name, "ball", pos, pos, float(np.linalg.norm(size[:3])))
    return None  # planes, meshes, ...: not part of the arm's collision model here
