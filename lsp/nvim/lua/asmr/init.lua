-- asmr-daemon for Neovim: hover / inlay hints / code actions / completion from the running daemon.
--
--   require("asmr").setup({ address = "127.0.0.1:9257" })        -- TCP (Neovim >= 0.8)
--   require("asmr").setup({ address = "/run/user/1000/asmr-daemon/lsp.sock" })  -- socket (>= 0.10)
--   require("asmr").setup({ cmd = { "asmr-daemon", "lsp" } })     -- stdio bridge (any version)
--
-- With no option: Neovim >= 0.10 connects to the default socket, older versions use the bridge.
local M = {}

local defaults = {
  address = nil, -- "host:port" or a socket path
  cmd = nil, -- a command speaking LSP on stdio
  token = nil, -- TCP: the daemon's [lsp] token; default: the contents of STATE_DIR/lsp.token
  state_dir = nil, -- the daemon's [paths] state_dir (default $XDG_STATE_HOME/asmr-daemon)
  filetypes = { "text", "srt", "subrip", "vtt", "webvtt", "lrc" },
  -- Neovim gives *.txt no filetype, so files are also matched by name.
  patterns = { "*.txt", "*.srt", "*.vtt", "*.lrc" },
  inlay_hints = true,
}

M.config = vim.deepcopy(defaults)

local function xdg_state()
  local state = vim.env.XDG_STATE_HOME
  if state == nil or state == "" then
    state = vim.fn.expand("~/.local/state")
  end
  return state
end

local function default_socket()
  local runtime = vim.env.XDG_RUNTIME_DIR
  if runtime == nil or runtime == "" then
    runtime = xdg_state() .. "/asmr-daemon/run"
  end
  return runtime .. "/asmr-daemon/lsp.sock"
end

local function is_tcp(address)
  return address ~= nil and address:match("^%[?[^%]]*%]?:%d+$") ~= nil and not address:find("/")
end

-- Every TCP connection must send the daemon's token: the `token` option, else the file the
-- daemon generated (STATE_DIR/lsp.token, readable only by you). The socket needs none.
function M.token(opts)
  if opts.token then
    return opts.token
  end
  if opts.cmd or not is_tcp(opts.address) then
    return nil
  end
  local path = (opts.state_dir and vim.fn.expand(opts.state_dir) or (xdg_state() .. "/asmr-daemon")) .. "/lsp.token"
  local ok, lines = pcall(vim.fn.readfile, path, "", 1)
  if ok and lines[1] and lines[1] ~= "" then
    return vim.trim(lines[1])
  end
  vim.notify("asmr: no token for " .. opts.address .. ": set `token` or `state_dir` (" .. path .. " is not readable)", vim.log.levels.WARN)
  return nil
end

-- What vim.lsp.start_client gets as `cmd`: a table (spawn) or a function (connect).
function M.resolve_cmd(opts)
  if opts.cmd then
    return opts.cmd
  end
  local address = opts.address
  if address == nil then
    if vim.lsp.rpc.connect and vim.fn.has("nvim-0.10") == 1 then
      address = default_socket()
    else
      return { "asmr-daemon", "lsp" }
    end
  end
  local host, port = address:match("^%[?([^%]]*)%]?:(%d+)$")
  if host and not address:find("/") then
    if not vim.lsp.rpc.connect then -- Neovim 0.7: no network client
      vim.notify("asmr: Neovim < 0.8 cannot connect to " .. address .. "; using `asmr-daemon lsp`", vim.log.levels.WARN)
      return { "asmr-daemon", "lsp" }
    end
    return vim.lsp.rpc.connect(host ~= "" and host or "127.0.0.1", tonumber(port))
  end
  -- A socket path: vim.lsp.rpc.connect(pipe) exists from Neovim 0.10; before that, the bridge.
  if vim.lsp.rpc.connect and vim.fn.has("nvim-0.10") == 1 then
    return vim.lsp.rpc.connect(address)
  end
  return { "asmr-daemon", "lsp", "--socket", address }
end

local function client_config()
  local opts = M.config
  local token = M.token(opts)
  return {
    name = "asmr-daemon",
    cmd = M.resolve_cmd(opts),
    root_dir = vim.fn.getcwd(),
    init_options = token and { token = token } or vim.empty_dict(),
  }
end

local client_id = nil

-- Start (once) and attach the client to a buffer.
function M.attach(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if client_id == nil or vim.lsp.get_client_by_id(client_id) == nil then
    client_id = vim.lsp.start_client(client_config())
    if client_id == nil then
      vim.notify("asmr: could not start the language client", vim.log.levels.ERROR)
      return nil
    end
  end
  vim.lsp.buf_attach_client(bufnr, client_id)
  if M.config.inlay_hints and vim.lsp.inlay_hint and vim.lsp.inlay_hint.enable then
    pcall(vim.lsp.inlay_hint.enable, true, { bufnr = bufnr })
  end
  return client_id
end

-- :AsmrTranslateDocument [replace] -- translate the buffer (bilingual layout by default).
function M.translate_document(layout)
  local bufnr = vim.api.nvim_get_current_buf()
  local args = { vim.uri_from_bufnr(bufnr) }
  if layout and layout ~= "" then
    table.insert(args, layout)
  end
  vim.lsp.buf_request(bufnr, "workspace/executeCommand", { command = "asmr.translateDocument", arguments = args }, function(err)
    if err then
      vim.notify("asmr: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
  end)
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  local group = vim.api.nvim_create_augroup("asmr", { clear = true })
  vim.api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  vim.api.nvim_create_autocmd({ "BufReadPost", "BufNewFile" }, {
    group = group,
    pattern = M.config.patterns,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  vim.api.nvim_create_user_command("AsmrTranslateDocument", function(cmd)
    M.translate_document(cmd.args)
  end, { nargs = "?", complete = function() return { "bilingual", "replace" } end })
  -- Subtitle extensions Neovim does not know by itself.
  if vim.filetype and vim.filetype.add then
    vim.filetype.add({ extension = { lrc = "lrc", vtt = "vtt" } })
  end
end

return M
