"""Road users the learned world has seen, kept as moving objects.

Every committed frame's road users (blobs, as :func:`~occsim.road_users.keep_road_users`
leaves them) are matched to the objects of the frame before by class and distance in the
world frame; a matched object's velocity is its displacement over the frame period (an
unmatched one starts still): a pedestrian's, a line fit through the real frames (its blob
of a few columns jitters), and a vehicle's lies along its length (it does not slide
sideways across the lanes). The next frame places every object where its velocity takes
it, so a car seen driving keeps driving instead of smearing, and a parked one stays put.
One the real frames show turning turns on, its shape with it, for part of a junction's
quarter turn, or until it lies along the road it is turning onto; one they show slowing
steadily brakes on to a stop (a car queueing at a junction) instead of driving through
what it was stopping for. An object that would move into the ego's box or up against
another object stops short, at its last clear place (it yields, as the exact world's
traffic does), and drives on once the way is clear: road users never merge into one blob.
One standing still is drawn from the nearest samples of all the real views of it, and a
pedestrian walks on along its sidewalk (:mod:`occsim.walkways`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from occsim.geometry import local_to_world, rotation_2d, world_to_local, wrap_angle
from occsim.grid import EGO_LENGTH, EGO_WIDTH, FRAME_DT, OCC3D_GRID, GridSpec, column_any
from occsim.labels import (
    BICYCLE,
    DRIVEABLE_SURFACE,
    DYNAMIC_CLASSES,
    PEDESTRIAN,
    ClassMask,
)
from occsim.motion_estimates import (
    QUARTER_TURN,
    REAL_INTERVALS,
    braking_of,
    heading_of,
    line_fit,
    road_direction,
    turn_of,
)
from occsim.walkways import Sidewalks, along_route

MAX_MATCH_DISTANCE = 4.0  # metres an object may stray from its prediction in a frame (0.5 s)
VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in the velocity estimate
# Classes that keep a steady pace: their velocity is a line fit through the real frames'
# centroids, which a small blob's jitter moves less; vehicles speed up and slow down, and
# their newest displacement weighs most.
STEADY_CLASSES = (PEDESTRIAN,)
YIELD_MARGIN = 1.0  # metres around the ego box that a moving object will not enter
EMPTY = 255  # no road user in a voxel of an object's volume or of a prediction
STILL_SPEED = 0.5  # m/s under which an object is taken to stand still (centroid jitter)
STILL_VIEWS = 3  # earlier real views an object standing still keeps (the reset's four frames)
SIZE_CHANGE = 0.2  # relative change of voxel count beyond which a blob is a new object
ELONGATION = 1.5  # length over width from which a blob moves only along its length
MIN_LENGTH = 1.2  # metres a blob must be long for its length to be told from its width
SIZE_SLACK = 24  # voxels a small blob may change by (a pedestrian: 1-4 columns; two merging pass)
TURN_STEP = 0.05  # s: the step of the turning motion's integration
MAX_SPEED = {PEDESTRIAN: 3.0, BICYCLE: 8.0}  # m/s; other road users up to DEFAULT_MAX_SPEED
DEFAULT_MAX_SPEED = 20.0
_CONNECTIVITY = np.ones((3, 3), dtype=bool)
_NO_MATCH = 1e9  # the cost of a pair that may not be matched


_ROAD_USER = ClassMask(DYNAMIC_CLASSES)
# An object's place in a view: columns (ix, iy), their classes (n, Z), whether each holds it.
Stamp = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _to_world(local: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return local_to_world(local, pose[:2], pose[2])


def _to_local(world: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return world_to_local(world, pose[:2], pose[2])


@dataclass
class RoadUser:
    """One object: its voxels as first seen (``volume (bx, by, Z)`` of classes, ``EMPTY``
    elsewhere, whose corner is voxel ``lower (2,)`` of the frame seen from ``frame_pose``),
    the world ``offset`` it has moved since, its world ``centroid`` now, its ``velocity``
    (m/s, taken whole from the first displacement, then smoothed, or for a steady walker
    fitted; for one braking, its speed at the end of the last real interval) and class."""

    volume: np.ndarray
    lower: np.ndarray
    frame_pose: np.ndarray
    offset: np.ndarray
    centroid: np.ndarray
    velocity: np.ndarray
    cls: int
    measured: bool = False  # whether the velocity comes from a displacement yet
    cut: bool = False  # whether the view's edge cuts it (its centroid is not its centre)
    real_velocities: tuple[tuple[float, float], ...] = ()  # measured in real frames, newest last
    braking: float = 0.0  # m/s^2 it slows by until it stands (0: constant velocity)
    axis: np.ndarray | None = None  # world direction of its long side (None: about square)
    curvature: float = 0.0  # rad a metre it turns by (counter-clockwise positive; 0: straight)
    turn_left: float = 0.0  # rad it may still turn before it drives straight on
    turn_seen: float = 0.0  # rad the real frames saw it turn
    turned: float = 0.0  # rad its shape has turned since it was captured
    # Earlier real views ``(volume, lower, frame_pose)`` of an object standing still: each
    # frame samples it at other voxel centres, and the stamp takes the nearest sample.
    views: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...] = ()
    # A walker's way along its sidewalk (world points, see walkways.py) and how far along it
    # it was when last observed; None: it goes straight on.
    route: np.ndarray | None = None
    route_at: float = 0.0

    def travel(self, seconds: float) -> np.ndarray:
        """World displacement ``(2,)`` over ``seconds``."""
        return self.motion(seconds)[0]

    def motion(self, seconds: float) -> tuple[np.ndarray, float]:
        """World displacement ``(2,)`` and turn (rad) over ``seconds``: constant velocity,
        or braking at a constant rate until it stands; one taking a turn turns by its
        curvature along the way until the turn is done (braking, on a tighter arc as it
        slows, never turning on the spot)."""
        speed = float(np.hypot(*self.velocity))
        if speed == 0:
            return np.zeros(2), 0.0
        if self.route is not None:
            there = along_route(self.route, self.route_at + speed * seconds)[0]
            return there - along_route(self.route, self.route_at)[0], 0.0
        braking = max(self.braking, 0.0)
        moving = seconds if braking == 0 else min(seconds, speed / braking)
        distance = speed * moving - 0.5 * braking * moving**2
        if not self.curvature:
            return self.velocity / speed * distance, 0.0
        steps = max(1, int(np.ceil(moving / TURN_STEP)))
        t = (np.arange(steps) + 0.5) * (moving / steps)
        travelled = speed * t - 0.5 * braking * t**2
        limit = self.turn_left
        headings = heading_of(self.velocity) + np.clip(self.curvature * travelled, -limit, limit)
        step = (speed - braking * t) * (moving / steps)
        moved = np.array([step @ np.cos(headings), step @ np.sin(headings)])
        return moved, float(np.clip(self.curvature * distance, -limit, limit))

    def advance(self, seconds: float) -> tuple[np.ndarray, float]:
        """Its velocity ``(2,)`` ``seconds`` on (turned, and slower when braking) and the
        turn (rad) it made."""
        _, turn = self.motion(seconds)
        speed = float(np.hypot(*self.velocity))
        if self.route is not None:
            return speed * along_route(self.route, self.route_at + speed * seconds)[1], 0.0
        slower = max(speed - max(self.braking, 0.0) * seconds, 0.0) / max(speed, 1e-9)
        return rotation_2d(turn) @ self.velocity * slower, turn


def extract(frame: np.ndarray, pose: np.ndarray, grid: GridSpec = OCC3D_GRID) -> list[RoadUser]:
    """The road-user blobs (8-connected columns) of ``frame`` seen from ``pose``, standing
    still."""
    users = _ROAD_USER(frame)
    if not users.any():
        return []
    labels, _ = ndimage.label(column_any(users), _CONNECTIVITY)
    pose = np.asarray(pose, dtype=np.float64)
    objects = []
    for blob, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = (labels[box] == blob)[:, :, None] & users[box]
        volume = np.where(inside, frame[box[:2]], np.uint8(EMPTY)).astype(np.uint8)
        lower = np.array([box[0].start, box[1].start])
        columns = np.argwhere(inside.any(axis=2)) + lower
        world = _to_world(grid.index_to_metric(columns), pose)
        centroid = world.mean(axis=0)
        classes = volume[volume != EMPTY]
        cls = int(np.bincount(classes).argmax())
        cut = box[0].start == 0 or box[1].start == 0
        cut |= box[0].stop == frame.shape[0] or box[1].stop == frame.shape[1]
        objects.append(
            RoadUser(
                volume,
                lower,
                pose,
                np.zeros(2),
                centroid,
                np.zeros(2),
                cls,
                cut=cut,
                axis=_long_axis(world - centroid),
            )
        )
    return objects


def _long_axis(offsets: np.ndarray) -> np.ndarray | None:
    """The unit direction ``(2,)`` along which a footprint of column ``offsets (n, 2)``
    from its centroid is longest, or ``None`` for one about as wide as long or too short to
    tell (a pedestrian's one or two columns)."""
    if len(offsets) < 2:
        return None
    variances, directions = np.linalg.eigh(offsets.T @ offsets / len(offsets))
    # A uniform footprint of length L has variance L^2 / 12 along it.
    if variances[1] < ELONGATION**2 * max(variances[0], 1e-9) or variances[1] < MIN_LENGTH**2 / 12:
        return None
    return directions[:, 1]


def _voxels(obj: RoadUser) -> int:
    return int(np.count_nonzero(obj.volume != EMPTY))


class RoadUserTracks:
    """The road users of the latest committed frame, with their shapes and velocities."""

    def __init__(self, grid: GridSpec = OCC3D_GRID, frame_period: float = FRAME_DT) -> None:
        self.grid, self.frame_period = grid, frame_period
        self.objects: list[RoadUser] = []
        self._ego_box = grid.ego_footprint(EGO_LENGTH, EGO_WIDTH, margin=YIELD_MARGIN)

    def clear(self) -> None:
        """Forget every object."""
        self.objects = []

    def observe(
        self, frame: np.ndarray, pose: np.ndarray, frames_since: int = 1, observed: bool = False
    ) -> None:
        """Take the road users of a committed ``frame`` at ``pose``, ``frames_since`` frames
        after the last observed one. Each one matched to an object seen then
        (:func:`_associate`) is that object moved on: its displacement updates the
        velocity, and it keeps the object's shape, unless the
        frame was ``observed`` (not generated): a real view is the best shape there is,
        while re-capturing a shape from its own resampled stamp would wear it down. The
        others are new and stand still."""
        current = extract(frame, pose, self.grid)
        previous = self.objects
        # A real frame's driveable columns tell a turning vehicle where its road goes.
        road = column_any(frame == DRIVEABLE_SURFACE) if observed else None
        elapsed = self.frame_period * frames_since
        sidewalks = None  # a real frame's, read when a walker needs it
        if previous and current:
            for n, best in _associate(previous, current, elapsed, observed):
                obj, match = current[n], previous[best]
                if obj.cut or match.cut:
                    # Half in view, its centroid moves as the view does: it keeps the motion
                    # it had before the edge cut it, or keeps still.
                    if np.any(match.velocity):
                        obj.velocity, turn = match.advance(elapsed)
                        obj.measured, obj.braking = match.measured, match.braking
                        obj.turn_seen = match.turn_seen
                        obj.turn_left = max(match.turn_left - abs(turn), 0.0)
                        obj.curvature = match.curvature if obj.turn_left > 0 else 0.0
                        if match.route is not None:
                            obj.route = match.route
                            obj.route_at = match.route_at + np.hypot(*match.velocity) * elapsed
                    continue
                moved = obj.centroid - match.centroid
                measured = moved / elapsed
                speed = float(np.hypot(*measured))
                if speed > MAX_SPEED.get(match.cls, DEFAULT_MAX_SPEED):
                    continue
                history, braking = match.real_velocities, match.braking
                curvature, turn_left, turn_seen = match.curvature, match.turn_left, match.turn_seen
                turned, yaw_rate = 0.0, 0.0
                if observed:
                    history = (*history, tuple(measured))[-REAL_INTERVALS:]
                    steady = match.cls in STEADY_CLASSES
                    speeds = np.hypot(*np.transpose(history))
                    braking = 0.0 if steady else braking_of(speeds, elapsed)
                    yaw_rate, turn_seen, turn_left = (
                        (0.0, 0.0, 0.0)
                        if steady
                        else self._real_turn(match, history, elapsed, road, pose, obj.centroid)
                    )
                    curvature = yaw_rate / float(np.mean(speeds)) if turn_left else 0.0
                elif curvature:
                    expected, turn = match.motion(elapsed)
                    # It turned as predicted unless it waited (for the ego or another).
                    if np.hypot(*moved) >= 0.5 * np.hypot(*expected):
                        turned, turn_left = turn, max(turn_left - abs(turn), 0.0)
                if braking and observed:
                    # The displacement gives the mean speed over the interval; braking, the
                    # object is slower at its end by half the interval's slowing.
                    now = max(speed - braking * elapsed / 2, 0.0)
                    velocity = measured * now / max(speed, 1e-9)
                elif braking:
                    # It moved as predicted (or waited); it has slowed as it brakes.
                    was = float(np.hypot(*match.velocity))
                    velocity = match.velocity * max(was - braking * elapsed, 0.0) / max(was, 1e-9)
                elif observed and match.cls in STEADY_CLASSES:
                    velocity = line_fit(history)
                elif not observed and _waited(match, moved, elapsed):
                    # It waited for the ego or another object: it goes on once the way is
                    # clear (its own stop is no measurement of its speed).
                    velocity = match.velocity
                else:
                    weight = VELOCITY_SMOOTHING if match.measured else 1.0
                    velocity = weight * measured + (1 - weight) * match.velocity
                    if curvature and not observed:
                        # Speeds, not vectors: a chord and two headings would shorten it.
                        speed = weight * speed + (1 - weight) * float(np.hypot(*match.velocity))
                        velocity = velocity / max(float(np.hypot(*velocity)), 1e-9) * speed
                if curvature:
                    # Turning, it heads where the turn has taken it: half an interval past
                    # the last real interval's mean heading, or the predicted turn on.
                    heading = (
                        heading_of(history[-1]) + yaw_rate * elapsed / 2
                        if observed
                        else heading_of(match.velocity) + turned
                    )
                    velocity = np.hypot(*velocity) * np.array([np.cos(heading), np.sin(heading)])
                    curvature = curvature if turn_left > 0 else 0.0
                elif obj.axis is not None:
                    # A vehicle drives along its length: the centroid's sideways jitter
                    # would otherwise carry it across the lanes.
                    velocity = obj.axis * float(obj.axis @ velocity)
                if np.hypot(*velocity) < STILL_SPEED:
                    velocity, braking, curvature = np.zeros(2), 0.0, 0.0
                route, route_at = None, 0.0
                if observed and match.cls in STEADY_CLASSES and np.any(velocity):
                    if sidewalks is None:
                        sidewalks = Sidewalks(frame, pose, self.grid)
                    route = sidewalks.route(obj.centroid, heading_of(velocity))
                elif not observed and match.route is not None:
                    # On along its way at its pace (its own frame is no measurement of
                    # it), as far as it got: it may have stopped short for another.
                    pace = float(np.hypot(*match.velocity))
                    route = match.route
                    route_at = match.route_at + min(float(np.hypot(*moved)), pace * elapsed)
                    velocity = pace * along_route(route, route_at)[1]
                shape = obj if observed else match
                views = match.views
                if observed:
                    still = not np.any(velocity) and not np.any(match.velocity)
                    earlier = (*match.views, (match.volume, match.lower, match.frame_pose))
                    views = earlier[-STILL_VIEWS:] if still else ()
                current[n] = RoadUser(
                    shape.volume,
                    shape.lower,
                    shape.frame_pose,
                    obj.offset if observed else match.offset + moved,
                    obj.centroid,
                    velocity,
                    match.cls,
                    measured=True,
                    cut=obj.cut,
                    real_velocities=history,
                    braking=braking,
                    axis=obj.axis,
                    curvature=curvature,
                    turn_left=turn_left,
                    turn_seen=turn_seen,
                    turned=0.0 if observed else match.turned + turned,
                    views=views,
                    route=route,
                    route_at=route_at,
                )
        self.objects = current

    def _real_turn(
        self,
        match: RoadUser,
        history: tuple[tuple[float, float], ...],
        elapsed: float,
        road: np.ndarray,
        pose: np.ndarray,
        centroid: np.ndarray,
    ) -> tuple[float, float, float]:
        """Yaw rate (rad/s), turn seen and turn left (rad) of a vehicle the real frames
        show at world ``centroid`` with displacements ``history`` (newest last; ``match`` is
        it a frame before): :func:`~occsim.motion_estimates.turn_of` for part of a quarter
        turn, or until it lies along the road (``road``, the frame's driveable columns seen
        from ``pose``) it turns towards. ``(0, 0, 0)`` when it goes straight."""
        yaw_rate, turn_seen = turn_of(history, elapsed)
        if not yaw_rate:
            return 0.0, 0.0, 0.0
        if match.curvature:
            # The turn goes on: what it saw before, and this interval's turn.
            last = heading_of(history[-1]) - heading_of(history[-2])
            turn_seen = match.turn_seen + abs(float(wrap_angle(last)))
        turn_left = max((QUARTER_TURN - turn_seen) / 2, 0.0)
        along = road_direction(road, pose, centroid, self.grid) if turn_left else None
        if along is not None:
            heading = heading_of(history[-1]) + yaw_rate * elapsed / 2
            # The road is undirected: the nearer way along it.
            to_road = (along - heading + np.pi / 2) % np.pi - np.pi / 2
            if np.sign(to_road) == np.sign(yaw_rate):
                # Turning towards the road's direction, it ends the turn there (turning
                # away, it is leaving the road it came on).
                turn_left = min(turn_left, abs(to_road))
        return yaw_rate, turn_seen, turn_left

    def predict(self, pose: np.ndarray, frames_ahead: int = 1) -> np.ndarray:
        """Road users ``(X, Y, Z)`` (class ids, ``EMPTY`` elsewhere) ``frames_ahead`` frames
        after the last observed one, seen from ``pose``: each object moved on by its
        velocity, or, if that would take it into the ego's box or up against another
        object, stopped at the last of its earlier frames' places short of that (or where
        it was). Road users do not drive into each other: a car closing in on a slower one
        waits behind it, as the exact world's traffic does, instead of merging with it into
        one blob. An object moves once the ones in its way have."""
        return self.predict_with_parked(pose, frames_ahead)[0]

    def predict_with_parked(
        self, pose: np.ndarray, frames_ahead: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict`, and which of its voxels ``(X, Y, Z)`` belong to objects parked
        where the real frames saw them (standing still through several of them, drawn from
        their real views): those are no prediction but what was seen, and stand even where
        the memory holds structure they overlap (a vehicle parked against a barrier)."""
        pose = np.asarray(pose, dtype=np.float64)
        out = np.full(self.grid.shape, EMPTY, dtype=np.uint8)
        parked = np.zeros(self.grid.shape, dtype=bool)
        taken = np.zeros(self.grid.shape[:2], dtype=bool)  # columns of objects placed
        owner = np.full(self.grid.shape[:2], -1)  # which unplaced object stands in a column
        here = [self._stamp(obj, obj.offset, obj.turned, pose) for obj in self.objects]
        for i, stamp in enumerate(here):
            if stamp is not None:
                owner[stamp[0], stamp[1]] = np.where(stamp[3], i, owner[stamp[0], stamp[1]])

        def place(i: int, stamp) -> None:
            if stamp is not None:
                ix, iy, columns, standing = stamp
                out[ix, iy] = np.where(columns != EMPTY, columns, out[ix, iy])
                taken[ix[standing], iy[standing]] = True
            if here[i] is not None:
                ix, iy = here[i][0], here[i][1]
                owner[ix, iy] = np.where(owner[ix, iy] == i, -1, owner[ix, iy])

        def blocked(stamp: Stamp) -> bool:
            """Whether a place is in the ego's box or touches an object placed."""
            ix, iy, columns, standing = stamp
            in_body = (columns[:, self.grid.ego_body_band] != EMPTY).any(axis=1)
            return bool(np.any(self._ego_box[ix[in_body], iy[in_body]])) or _touches(
                taken, ix[standing], iy[standing]
            )

        def clear_of_all(i: int) -> Callable[[Stamp], bool]:
            """Whether a place of object ``i`` is clear of the ego, placed objects and the
            places of those not yet moved."""

            def clear(stamp: Stamp) -> bool:
                ix, iy, _, standing = stamp
                return not blocked(stamp) and not _touches(
                    owner, ix[standing], iy[standing], other_than=i
                )

            return clear

        moving = []
        for i, obj in enumerate(self.objects):
            if np.any(obj.velocity):
                moving.append(i)
                continue
            place(i, here[i])
            if obj.views and here[i] is not None:
                ix, iy, columns, _ = here[i]
                parked[ix, iy] |= columns != EMPTY
        while moving:
            waiting = []
            for i in moving:
                obj = self.objects[i]
                moved, turn = obj.motion(self.frame_period * frames_ahead)
                stamp = self._stamp(obj, obj.offset + moved, obj.turned + turn, pose)
                if stamp is None:
                    place(i, None)  # it has left the view
                    continue
                ix, iy, _, standing = stamp
                if blocked(stamp):
                    # It would drive into the ego or a placed object: it stops short.
                    place(i, self._stopped(obj, frames_ahead, pose, clear_of_all(i), here[i]))
                elif _touches(owner, ix[standing], iy[standing], other_than=i):
                    waiting.append(i)  # one in its way has not moved yet
                else:
                    place(i, stamp)
            if len(waiting) == len(moving):  # a queue that cannot move: all wait
                for i in waiting:
                    place(i, here[i])
                break
            moving = waiting
        return out, parked & (out != EMPTY)

    def _stopped(
        self,
        obj: RoadUser,
        frames_ahead: int,
        pose: np.ndarray,
        clear: Callable[[Stamp], bool],
        here: Stamp | None,
    ) -> Stamp | None:
        """The stamp of ``obj`` at the last of its places 1 .. ``frames_ahead - 1`` frames
        on before the first that is not ``clear`` (it stops short of what is in its way,
        never beyond it), or ``here`` when even the first is not; ``None`` once it has left
        the view."""
        last = here
        for frames in range(1, frames_ahead):
            moved, turn = obj.motion(self.frame_period * frames)
            stamp = self._stamp(obj, obj.offset + moved, obj.turned + turn, pose)
            if stamp is None:
                return None
            if not clear(stamp):
                break
            last = stamp
        return last

    def _stamp(
        self, obj: RoadUser, shift: np.ndarray, turn: float, pose: np.ndarray
    ) -> Stamp | None:
        """Target columns ``(ix, iy)``, their classes ``(n, Z)`` and whether each holds any
        of it ``(n,)``, of an object moved by a world ``shift`` and turned by ``turn`` (rad)
        about its centroid, seen from ``pose``; every target column samples the nearest
        column of the object's volume (no holes, no growth when it turns). One standing
        still has several real views: each target column takes the sample whose column
        centre lies nearest its own, a column outside a view's blob being empty there."""
        grid = self.grid
        views = ((obj.volume, obj.lower, obj.frame_pose), *obj.views)
        pivot = obj.centroid - obj.offset  # its centroid when its volume was captured
        box = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
        corners = [
            _to_world(grid.lower[:2] + (box * volume.shape[:2] + lower) * grid.voxel_size, frame)
            for volume, lower, frame in views
        ]
        world = local_to_world(np.concatenate(corners) - pivot, pivot, turn) + shift
        local = _to_local(world, pose)
        low = np.maximum(grid.metric_to_index(local.min(axis=0)), 0)
        high = np.minimum(grid.metric_to_index(local.max(axis=0)) + 1, grid.shape[:2])
        if np.any(high <= low):
            return None
        ix, iy = np.meshgrid(np.arange(low[0], high[0]), np.arange(low[1], high[1]), indexing="ij")
        ix, iy = ix.ravel(), iy.ravel()
        centres = _to_world(grid.index_to_metric(np.stack([ix, iy], axis=1)), pose) - shift
        centres = world_to_local(centres, pivot, turn) + pivot
        columns = np.full((len(ix), grid.shape[2]), EMPTY, dtype=np.uint8)
        nearest = np.full(len(ix), np.inf)
        covered = np.zeros(len(ix), dtype=bool)
        for volume, lower, frame in views:
            metric = _to_local(centres, frame)
            index = grid.metric_to_index(metric)
            source = index - lower
            inside = np.all((source >= 0) & (source < volume.shape[:2]), axis=1)
            covered |= inside
            distance = np.sum((metric - grid.index_to_metric(index)) ** 2, axis=1)
            closer = distance < nearest
            nearest[closer] = distance[closer]
            columns[closer] = EMPTY
            take = closer & inside
            columns[take] = volume[source[take, 0], source[take, 1]]
        if not covered.any():
            return None
        columns = columns[covered]
        return ix[covered], iy[covered], columns, (columns != EMPTY).any(axis=1)


def _associate(
    previous: list[RoadUser], current: list[RoadUser], elapsed: float, observed: bool
) -> list[tuple[int, int]]:
    """Pairs ``(current index, previous index)`` of one object seen ``elapsed`` seconds
    apart: same class, about the same size, within reach of where the previous one was
    heading, assigned together so the total distance is least (a car passing a parked one
    keeps its own track). Reach is :data:`MAX_MATCH_DISTANCE` from the prediction (in the
    tracks' own frames, or from where it stood, if it waited there); an
    object of a real frame not yet measured may have moved as far as its class can drive
    (a car at 12 m/s covers 6 m between two frames; it used to start again, still)."""
    expected = np.array([o.centroid + o.travel(elapsed) for o in previous])
    centroids = np.array([o.centroid for o in current])[:, None]
    distance = np.linalg.norm(centroids - expected[None], axis=2)
    if not observed:
        # The tracks' own frame: an object that waited (for the ego, or another) stands
        # where it was.
        stood = np.linalg.norm(centroids - np.array([o.centroid for o in previous])[None], axis=2)
        distance = np.minimum(distance, stood)
    reach = np.array(
        [
            MAX_MATCH_DISTANCE
            if o.measured or not observed
            else max(MAX_MATCH_DISTANCE, MAX_SPEED.get(o.cls, DEFAULT_MAX_SPEED) * elapsed)
            for o in previous
        ]
    )
    same_class = np.array([o.cls for o in current])[:, None] == np.array([o.cls for o in previous])
    # Blobs that merge or split (a car passing a parked row) are not one object moving:
    # their centroid jumps, and their voxel count with it.
    counts = np.array([_voxels(o) for o in current])[:, None]
    old_counts = np.array([_voxels(o) for o in previous])[None]
    same_size = np.abs(counts - old_counts) <= np.maximum(
        SIZE_CHANGE * np.maximum(counts, old_counts), SIZE_SLACK
    )
    allowed = same_class & same_size & (distance <= reach[None])
    rows, cols = linear_sum_assignment(np.where(allowed, distance, _NO_MATCH))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def _waited(obj: RoadUser, moved: np.ndarray, elapsed: float) -> bool:
    """Whether ``obj``, predicted to move on for ``elapsed`` seconds, moved by ``moved``
    (world) less than half as far: it stood, waiting, for part of the time."""
    expected = obj.motion(elapsed)[0]
    return bool(np.any(expected)) and np.hypot(*moved) < 0.5 * np.hypot(*expected)


def _touches(
    occupied: np.ndarray, ix: np.ndarray, iy: np.ndarray, other_than: int | None = None
) -> bool:
    """Whether any column ``(ix, iy)`` is or neighbours (8-connected) an occupied column:
    two such blobs would be one. ``occupied`` is a boolean map, or with ``other_than`` a
    map of owners (-1 for none) where that owner's own columns do not count."""
    nx, ny = occupied.shape
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            near = occupied[np.clip(ix + dx, 0, nx - 1), np.clip(iy + dy, 0, ny - 1)]
            if other_than is None and near.any():
                return True
            if other_than is not None and np.any((near >= 0) & (near != other_than)):
                return True
    return False
