# SPDX-License-Identifier: Apache-2.0
# The Python half of pythonExec. onlyboxes-agent builds this file into itself, writes it to its
# state directory in a box and starts it as `python3 -c <a line that runs it> FILE [--prepared
# MODULES]` (so that the code's sys.path and sys.argv are python3 -c's); it then runs one call (a
# one-shot box) or one call after another (a session's interpreter).
#
# Requests come on fd 3, one line each, tab-separated:
#   id  mode  base  streams  max_images  max_side  max_image_bytes  max_total_bytes  max_value
# mode is "oneshot" (run the code, then exit as `python3 -c CODE` would) or "session" (run it in
# the session's namespace and wait for the next line). The code is in <base>.py. streams is "-"
# for the pipes the runner was started with (a cold one-shot) or "fifo": <base>.out and
# <base>.err, FIFOs the agent opened for reading. What the code leaves to show (the value of a
# final expression, matplotlib figures, PIL images) goes to <base>.res as JSON. After a session
# call the runner writes a report line on its original stdout, the agent's report pipe:
#   {"id": N, "status": "ok" | "error" | "exit" | "interrupted", "exit_code": N, "pid": N}
# With --prepared, the runner imports MODULES (comma-separated) first and then reports
#   {"ready": true, "pid": N, "missing": [{"module": ..., "error": ...}]}
# so that a pooled box's interpreter is ready before its call. Between calls fds 1 and 2 lead to
# /dev/null; a SIGINT (the agent's interrupt on a timeout) raises KeyboardInterrupt only while the
# code runs. Startup stays cheap on the cold path: only builtin modules are imported here.
import os
import sys


def _obx_runner():
    import _ast
    import _signal
    import binascii
    import builtins
    from _json import encode_basestring_ascii as jstr

    class S:
        in_user = False  # the user's code is running: SIGINT raises KeyboardInterrupt
        sigint = False  # a SIGINT came during this call
        cell = 0
        ns = None  # a session's __main__ module
        lim = None
        images = []
        notes = []
        total = 0
        dropped = 0
        captured = set()  # ids of figures already turned into images in this call

    NOTHING = object()
    argv = sys.argv  # ["-c", FILE, "--prepared", MODULES, AS_LIMIT]
    prepared = len(argv) > 2 and argv[2] == "--prepared"
    preload = argv[3] if prepared and len(argv) > 3 else ""
    as_limit = int(argv[4]) if prepared and len(argv) > 4 else 0
    sys.argv = ["-c"]
    loader = getattr(sys.modules["__main__"], "__loader__", None)

    # The pipes the runner was started with: user output for a cold one-shot, else the report
    # channel (stdout). Not inherited by the code's subprocesses.
    out0, err0 = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        os.set_inheritable(3, False)
    except OSError:
        pass

    def on_sigint(signum, frame):
        S.sigint = True
        if S.in_user:
            raise KeyboardInterrupt

    _signal.signal(_signal.SIGINT, on_sigint)

    def report(text):
        try:
            os.write(out0, (text + "\n").encode())
        except OSError:
            pass

    # ---- matplotlib: plt.show() turns the open figures into images and closes them, as a
    # notebook does; pyplot is patched as it is imported (here or by the code).
    def capture_figures():
        plt = sys.modules.get("matplotlib.pyplot")
        helpers = sys.modules.get("matplotlib._pylab_helpers")
        if plt is None or helpers is None:
            return
        for m in list(helpers.Gcf.get_all_fig_managers()):
            fig = m.canvas.figure
            if id(fig) not in S.captured:
                S.captured.add(id(fig))
                figure_image(fig, "figure %s" % m.num)
        plt.close("all")

    def show(*args, **kwargs):
        if S.lim is not None:
            capture_figures()

    class PyplotHook:
        busy = False

        def find_spec(self, name, path=None, target=None):
            if name != "matplotlib.pyplot" or self.busy:
                return None
            self.busy = True
            try:
                import importlib.util

                spec = importlib.util.find_spec(name)
            finally:
                self.busy = False
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                module.show = show

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, PyplotHook())

    class UserSite:
        # The site module adds the user site (~/.local/...) only when it exists at start-up: one
        # that `pip install` made later (in this call, or in the session's terminal) is added at
        # the first import that would otherwise fail.
        def find_spec(self, name, path=None, target=None):
            if path is not None:
                return None
            import site

            d = site.getusersitepackages()
            if d in sys.path or not os.path.isdir(d):
                return None
            site.addsitedir(d)
            import importlib
            import importlib.machinery

            importlib.invalidate_caches()
            return importlib.machinery.PathFinder.find_spec(name, [d])

    sys.meta_path.append(UserSite())

    # ---- images, bounded for a model's context: longest side, bytes each, count and bytes in
    # all per call; a note says what was changed or left out.
    def png_size(data):
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")

    def add_image(mime, data, w, h, label):
        lim = S.lim
        if len(S.images) >= lim[0]:
            S.dropped += 1
            return
        if S.total + len(data) > lim[3]:
            S.notes.append(
                "%s was left out: the images of one call may take %d KB in all"
                % (label, lim[3] // 1024)
            )
            return
        S.total += len(data)
        S.images.append((mime, data, w, h))

    def figure_image(fig, label):
        import io

        side_max, bytes_max = S.lim[1], S.lim[2]
        try:
            dpi = float(fig.dpi)
            want = max(fig.get_size_inches()) * dpi
            changed = want > side_max
            if changed:
                dpi = dpi * side_max / want
            for _ in range(8):
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
                data = buf.getvalue()
                w, h = png_size(data)
                if max(w, h) > side_max:
                    dpi = dpi * side_max / max(w, h) * 0.98
                elif len(data) > bytes_max:
                    dpi *= 0.7
                else:
                    break
                changed = True
            else:
                S.notes.append(
                    "%s was left out: it stayed larger than %d KB even at %.0f dpi"
                    % (label, bytes_max // 1024, dpi)
                )
                return
        except Exception as e:
            S.notes.append("%s could not be drawn: %s: %s" % (label, type(e).__name__, e))
            return
        if changed:
            S.notes.append(
                "%s was drawn at %dx%d px (%.0f dpi) to fit the image limits (longest side "
                "%d px, %d KB)" % (label, w, h, dpi, side_max, bytes_max // 1024)
            )
        add_image("image/png", data, w, h, label)

    def pil_image(img, label):
        import io

        Image = sys.modules["PIL.Image"]
        side_max, bytes_max = S.lim[1], S.lim[2]
        try:
            w0, h0 = img.size
            im = img
            what = []
            if max(w0, h0) > side_max:
                im = img.copy()
                im.thumbnail((side_max, side_max))
                what.append("scaled down to %dx%d px" % im.size)
            if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            data, mime = buf.getvalue(), "image/png"
            if len(data) > bytes_max:
                rgb = im.convert("RGBA")
                flat = Image.new("RGB", rgb.size, "white")
                flat.paste(rgb, mask=rgb.getchannel("A"))
                for _ in range(8):
                    buf = io.BytesIO()
                    flat.save(buf, format="JPEG", quality=85)
                    data, mime = buf.getvalue(), "image/jpeg"
                    if len(data) <= bytes_max:
                        break
                    w, h = flat.size
                    flat = flat.resize((max(1, int(w * 0.75)), max(1, int(h * 0.75))))
                else:
                    S.notes.append(
                        "%s was left out: it stayed larger than %d KB" % (label, bytes_max // 1024)
                    )
                    return
                im = flat
                what.append("re-encoded as JPEG at %dx%d px to fit %d KB" % (im.size + (bytes_max // 1024,)))
        except Exception as e:
            S.notes.append("%s could not be encoded: %s: %s" % (label, type(e).__name__, e))
            return
        if what:
            S.notes.append("%s (%dx%d px) was %s" % (label, w0, h0, " and ".join(what)))
        add_image(mime, data, im.size[0], im.size[1], label)

    # ---- the value of a final expression, as a REPL shows it.
    def value_text(v):
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(v, (pd.DataFrame, pd.Series)):
            rows, cols = 60, 20
            with pd.option_context(
                "display.max_rows", rows, "display.min_rows", 20, "display.max_columns", cols,
                "display.width", 160, "display.max_colwidth", 80,
            ):
                text = repr(v)
            shape = v.shape
            nrows, ncols = shape[0], shape[1] if len(shape) > 1 else 1
            if nrows > rows or ncols > cols:
                text += "\n(%s of %d rows and %d columns, cut to fit; print slices such as " \
                    ".head(n) or .iloc[a:b] for more)" % (type(v).__name__, nrows, ncols)
            return text
        return repr(v)

    def show_value(v):
        figure = sys.modules.get("matplotlib.figure")
        pil = sys.modules.get("PIL.Image")
        if figure is not None and isinstance(v, figure.Figure):
            if id(v) not in S.captured:
                S.captured.add(id(v))
                figure_image(v, "the final value (a figure)")
        elif pil is not None and isinstance(v, pil.Image):
            pil_image(v, "the final value (an image)")
        elif hasattr(type(v), "_repr_png_"):
            try:
                data = v._repr_png_()
                if isinstance(data, bytes) and data[:8] == b"\x89PNG\r\n\x1a\n":
                    w, h = png_size(data)
                    if max(w, h) <= S.lim[1] and len(data) <= S.lim[2]:
                        add_image("image/png", data, w, h, "the final value's picture")
            except Exception:
                pass
        try:
            text = value_text(v)
        except Exception as e:
            text = "<the value's repr() failed: %s: %s>" % (type(e).__name__, e)
        limit = S.lim[4]
        if len(text) > limit:
            text = text[:limit] + "\n... (the value's text is %d characters; the first %d are " \
                "shown)" % (len(text), limit)
        return text

    # ---- running the code
    def suppressed(code, node):
        # A trailing semicolon hides the value, as in a notebook.
        try:
            line = code.splitlines()[node.end_lineno - 1].encode()
            return line[node.end_col_offset:].decode(errors="ignore").lstrip().startswith(";")
        except Exception:
            return False

    def show_exc(e, filename, code, session):
        tb = e.__traceback__
        tb = tb.tb_next if tb is not None else None  # not the runner's own frame
        e.__traceback__ = tb
        if session:
            sys.last_type, sys.last_value, sys.last_traceback = type(e), e, tb
            import linecache
            import traceback

            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            traceback.print_exception(type(e), e, tb)
        else:
            sys.excepthook(type(e), e, tb)

    def run(code, ns, filename, session):
        """(kind, value): "ok" with the final expression's value (NOTHING when there is none),
        "error" (the traceback printed), "exit" with the SystemExit, or "interrupt"."""
        try:
            tree = compile(code, filename, "exec", _ast.PyCF_ONLY_AST, True)
            last = None
            if tree.body and isinstance(tree.body[-1], _ast.Expr) and not suppressed(code, tree.body[-1]):
                last = tree.body.pop()
            body = compile(tree, filename, "exec", 0, True)
            expr = compile(_ast.Expression(last.value), filename, "eval", 0, True) if last else None
        except Exception as e:
            e.__traceback__ = None
            if session:
                sys.last_type, sys.last_value, sys.last_traceback = type(e), e, None
            sys.excepthook(type(e), e, None)
            return "error", None
        S.in_user = True
        try:
            exec(body, ns)
            value = eval(expr, ns) if expr is not None else NOTHING
            S.in_user = False
            return "ok", value
        except SystemExit as e:
            S.in_user = False
            return "exit", e
        except KeyboardInterrupt as e:
            S.in_user = False
            show_exc(e, filename, code, session)
            return "interrupt", None
        except BaseException as e:
            S.in_user = False
            show_exc(e, filename, code, session)
            return "error", None
        finally:
            S.in_user = False

    def fresh_main():
        m = type(sys)("__main__")
        m.__loader__ = loader
        m.__spec__ = None
        m.__package__ = None
        m.__annotations__ = {}
        m.__builtins__ = builtins
        sys.modules["__main__"] = m
        return m

    def read_code(base):
        path = base + ".py"
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
            os.unlink(path)
        return b"".join(chunks).decode("utf-8", "surrogateescape")

    def streams(base, kind):
        if kind == "-":
            os.dup2(out0, 1)
            os.dup2(err0, 2)
            return
        for fd, ext in ((1, ".out"), (2, ".err")):
            f = os.open(base + ext, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(f, fd)
            os.close(f)

    def streams_off():
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)

    def begin(f):
        S.lim = tuple(int(x) for x in f[4:9])
        S.images, S.notes, S.total, S.dropped, S.captured = [], [], 0, 0, set()
        S.sigint = False

    def finish(kind, value, base, session):
        text = None
        try:
            capture_figures()
            if kind == "ok" and value is not NOTHING and value is not None:
                if session:
                    builtins._ = value
                text = show_value(value)
        except KeyboardInterrupt:
            pass
        except Exception as e:
            S.notes.append("the results could not be collected: %s: %s" % (type(e).__name__, e))
        if S.dropped:
            S.notes.append(
                "%d more image(s) left out: at most %d per call" % (S.dropped, S.lim[0])
            )
        parts = []
        if text is not None:
            parts.append('"value":' + jstr(text.encode("utf-8", "backslashreplace").decode()))
        if S.images:
            parts.append('"images":[' + ",".join(
                '{"mime_type":"%s","width":%d,"height":%d,"data":"%s"}'
                % (m, w, h, binascii.b2a_base64(d, newline=False).decode())
                for m, d, w, h in S.images) + "]")
        if S.notes:
            parts.append('"notes":[' + ",".join(
                jstr(n.encode("utf-8", "backslashreplace").decode()) for n in S.notes) + "]")
        S.lim = None
        S.images = []
        if not parts:
            return
        data = ("{" + ",".join(parts) + "}").encode()
        fd = os.open(base + ".res", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def oneshot(f):
        base = f[2]
        code = read_code(base)
        streams(base, f[3])
        if f[3] == "-":
            os.close(out0)  # the code's own stdout now: no reports
        os.close(err0)
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        begin(f)
        kind, value = run(code, fresh_main().__dict__, "<string>", False)
        finish(kind, value, base, False)
        if kind == "interrupt":
            _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
            os.kill(os.getpid(), _signal.SIGINT)
        leave(f, exit_code(value) if kind == "exit" else 1 if kind == "error" else 0)

    def leave(f, code):
        # What the interpreter's exit does that the caller can see: wait for the code's threads,
        # run its atexit functions, flush the streams. Tearing down every module (pandas and
        # matplotlib take ~100 ms) would only delay the answer: the box is thrown away next. A
        # prepared interpreter then reports the exit status before it exits, so that the call's
        # answer does not wait for the kernel to free its memory either.
        try:
            threading = sys.modules.get("threading")
            if threading is not None:
                threading._shutdown()
        except BaseException:
            pass
        try:
            import atexit

            atexit._run_exitfuncs()
        except BaseException:
            pass
        if f[3] != "-":
            streams_off()
            report('{"id":%s,"status":"exit","exit_code":%d,"pid":%d}' % (f[0], code, os.getpid()))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)

    def exit_code(e):
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        try:
            print(code, file=sys.stderr)
        except Exception:
            pass
        return 1

    def session_call(f):
        base = f[2]
        S.cell += 1
        if S.ns is None:
            S.ns = fresh_main()
        sys.modules["__main__"] = S.ns
        status, code = "ok", 0
        try:
            begin(f)
            source = read_code(base)
            streams(base, f[3])
            kind, value = run(source, S.ns.__dict__, "<cell %d>" % S.cell, True)
            if kind == "exit":
                status, code = "exit", exit_code(value)
            elif kind != "ok":
                status, code = "error", 1
            if not S.sigint:
                finish(kind, value, base, True)
        except KeyboardInterrupt:
            pass
        except Exception as e:
            status, code = "error", 1
            try:
                print("onlyboxes: the call could not run: %s: %s" % (type(e).__name__, e), file=sys.stderr)
            except Exception:
                pass
        S.in_user = False
        if S.sigint:
            status, code = "interrupted", 1
        streams_off()
        report('{"id":%s,"status":"%s","exit_code":%d,"pid":%d}' % (f[0], status, code, os.getpid()))

    # ---- a pooled box's interpreter imports its modules before any call.
    def seed_matplotlib():
        # An image may carry matplotlib's font list built ahead (the data image does): a copy
        # in the cache directory saves scanning the fonts in every box.
        seed = "/usr/share/onlyboxes/matplotlib"
        target = os.environ.get("MPLCONFIGDIR")
        try:
            names = [n for n in os.listdir(seed) if n.startswith("fontlist-")]
        except OSError:
            return
        if not target or not names:
            return
        try:
            os.makedirs(target, exist_ok=True)
            for n in names:
                if not os.path.exists(os.path.join(target, n)):
                    with open(os.path.join(seed, n), "rb") as src:
                        data = src.read()
                    with open(os.path.join(target, n), "wb") as dst:
                        dst.write(data)
        except OSError:
            pass

    seed_matplotlib()
    if prepared:
        import time

        began = time.monotonic()
        missing = []
        for name in preload.split(","):
            name = name.strip()
            if not name:
                continue
            try:
                __import__(name)
            except BaseException as e:
                missing.append('{"module":%s,"error":%s}' % (jstr(name), jstr("%s: %s" % (type(e).__name__, e))))
        if "matplotlib.pyplot" in sys.modules:
            # The first figure drawn loads fonts: draw one now, outside pyplot's numbering.
            try:
                import io
                from matplotlib.backends.backend_agg import FigureCanvasAgg
                from matplotlib.figure import Figure

                fig = Figure(figsize=(1, 1))
                FigureCanvasAgg(fig)
                fig.add_subplot().plot([0, 1])
                fig.savefig(io.BytesIO(), format="png")
                del fig
            except Exception:
                pass
        if as_limit:
            # The imports had room of their own: from here the code gets the box's per-process
            # limit on top of what they took, as a fresh interpreter would have.
            try:
                import resource

                with open("/proc/self/statm") as f:
                    size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
                want = size + as_limit
                soft, hard = resource.getrlimit(resource.RLIMIT_AS)
                if hard == resource.RLIM_INFINITY or want < hard:
                    resource.setrlimit(resource.RLIMIT_AS, (want, want))
            except (OSError, ValueError, ImportError):
                pass
        sys.modules["__main__"] = fresh_main()
        report('{"ready":true,"pid":%d,"python":%s,"import_ms":%d,"missing":[%s]}' % (
            os.getpid(), jstr(sys.version.split()[0]), (time.monotonic() - began) * 1000,
            ",".join(missing)))

    buf = b""
    while True:
        while b"\n" not in buf:
            try:
                chunk = os.read(3, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                os._exit(0)  # the agent closed the command pipe: the interpreter is done
            buf += chunk
        line, _, buf = buf.partition(b"\n")
        f = line.decode().split("\t")
        if len(f) != 9:
            report('{"error":"malformed request"}')
            os._exit(2)
        if f[1] == "oneshot":
            return oneshot(f)
        session_call(f)


_obx_runner()
