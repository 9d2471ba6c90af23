// asmr-daemon for VS Code: connects to the running daemon's language server.
//
// The daemon keeps the model loaded and serves every editor, so the extension starts no
// process: it opens a stream to the daemon's Unix socket (or host:port) for each session.
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, StreamInfo } from "vscode-languageclient/node";

let client: LanguageClient | undefined;

function xdgState(): string {
  return process.env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state");
}

function defaultSocket(): string {
  const runtime = process.env.XDG_RUNTIME_DIR || path.join(xdgState(), "asmr-daemon", "run");
  return path.join(runtime, "asmr-daemon", "lsp.sock");
}

// Every TCP connection sends the daemon's token: the setting, else the file the daemon generated
// (STATE_DIR/lsp.token, readable only by you). The Unix socket needs none.
function tokenFor(address: string, configured: string, stateDir: string): string | undefined {
  if (configured || !("port" in connectOptions(address))) {
    return configured || undefined;
  }
  const dir = stateDir ? stateDir.replace(/^~(?=$|\/)/, os.homedir()) : path.join(xdgState(), "asmr-daemon");
  const file = path.join(dir, "lsp.token");
  try {
    return fs.readFileSync(file, "utf8").trim() || undefined;
  } catch (err) {
    void vscode.window.showWarningMessage(`asmr-daemon: no token for ${address}: set asmr.token or asmr.stateDir (${file}: ${(err as Error).message})`);
    return undefined;
  }
}

// "host:port" or "[::1]:port" -> TCP; anything else is a socket path.
function connectOptions(address: string): net.NetConnectOpts {
  const tcp = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  if (tcp && !address.includes("/")) {
    return { host: tcp[1] || "127.0.0.1", port: Number(tcp[2]) };
  }
  return { path: address };
}

function serverOptions(address: string): () => Promise<StreamInfo> {
  return () =>
    new Promise((resolve, reject) => {
      const socket = net.connect(connectOptions(address));
      socket.once("connect", () => resolve({ reader: socket, writer: socket }));
      socket.once("error", (err) =>
        reject(new Error(`asmr-daemon is not reachable at ${address} (${err.message}); start it with \`asmr-daemon serve\``)),
      );
    });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const config = vscode.workspace.getConfiguration("asmr");
  const address = config.get<string>("address") || defaultSocket();
  const token = tokenFor(address, config.get<string>("token") || "", config.get<string>("stateDir") || "");

  const clientOptions: LanguageClientOptions = {
    documentSelector: ["plaintext", "srt", "subrip", "vtt", "webvtt", "lrc"].map((language) => ({ language })),
    initializationOptions: token ? { token } : {},
  };
  client = new LanguageClient("asmr-daemon", "asmr-daemon", serverOptions(address), clientOptions);

  context.subscriptions.push(
    vscode.commands.registerCommand("asmr.translateDocumentCommand", async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor || !client) {
        return;
      }
      await client.sendRequest("workspace/executeCommand", {
        command: "asmr.translateDocument",
        arguments: [editor.document.uri.toString()],
      });
    }),
  );
  await client.start();
}

export async function deactivate(): Promise<void> {
  if (client) {
    await client.stop();
  }
}
